package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The vendor's numbered menu (reference.md, "Command-line tools"). Only the
// options backed by a verb of mdVerbs are available; the others are listed
// so that an operator who knows the vendor's numbers finds their place.
var vendorMenu = []string{
	1:  "Register a host in an existing domain",
	2:  "Edit a host",
	3:  "Delete a host",
	4:  "Change the Admin Node Manager credentials",
	5:  "Create a gateway instance",
	6:  "Edit a gateway instance",
	7:  "Delete a gateway instance",
	8:  "Add a tag to a gateway instance",
	9:  "Delete a tag from a gateway instance",
	10: "Add or remove a Linux service for a local gateway instance or this host's node manager",
	11: "Rename a group",
	12: "Delete a group",
	13: "Print the topology",
	14: "Check that the topologies of all hosts are in sync",
	15: "Compare the local topology with the Admin Node Manager's",
	16: "Sync all topologies",
	17: "Reset the local topology",
	18: "Deploy a configuration to a group",
	19: "List the deployments",
	20: "Create a deployment archive",
	21: "Download a deployment archive",
	22: "Update the properties of a deployment archive",
	23: "Change a group passphrase",
	24: "Regenerate certificates",
	25: "Sign a certificate signing request",
	26: "Submit a certificate",
}

// menuLater says why an option of the vendor's menu is not there yet.
var menuLater = map[int]string{}

// errInputEnded ends the menu when standard input ends in the middle of an
// operation's prompts; the operation is not performed.
var errInputEnded = errors.New("end of input")

func menuVerbs(n int) []*mdVerb {
	var out []*mdVerb
	for _, vb := range mdVerbs {
		if vb.Menu == n {
			out = append(out, vb)
		}
	}
	return out
}

func (s *mdSession) printMenu() {
	s.out("\nmanagedomain menu (%s)\n", s.home.Dir)
	for n := 1; n < len(vendorMenu); n++ {
		mark := ""
		if len(menuVerbs(n)) == 0 {
			mark = " (not available yet)"
		}
		s.out("%3d) %s%s\n", n, vendorMenu[n], mark)
	}
	s.out("  q) Quit\n")
}

// runMenu shows the menu and performs what is chosen, until "q" or the end
// of standard input. An error in one operation is printed and the menu goes
// on.
func runMenu(ctx context.Context, s *mdSession) error {
	s.interactive = true
	for {
		s.printMenu()
		s.out("Enter your choice: ")
		line, err := s.readLine()
		if err == io.EOF {
			s.out("\n")
			return nil
		}
		if err != nil {
			return err
		}
		choice := strings.TrimSpace(line)
		switch strings.ToLower(choice) {
		case "":
			continue
		case "q", "quit", "exit":
			return nil
		}
		n, err := strconv.Atoi(choice)
		if err != nil || n < 1 || n >= len(vendorMenu) {
			s.out("There is no option %q; enter a number from 1 to %d, or q to quit.\n", choice, len(vendorMenu)-1)
			continue
		}
		verbs := menuVerbs(n)
		if len(verbs) == 0 {
			why := ""
			if w := menuLater[n]; w != "" {
				why = ": " + w
			}
			s.out("Option %d (%s) is not available yet in this version of Gatehouse%s.\n", n, strings.ToLower(vendorMenu[n][:1])+vendorMenu[n][1:], why)
			continue
		}
		vb := verbs[0]
		if len(verbs) > 1 {
			if vb, err = s.chooseVerb(verbs); err != nil {
				if err == errInputEnded {
					s.out("\n")
					return nil
				}
				return err
			}
		}
		vals, err := s.promptParams(vb)
		if err == errInputEnded {
			s.out("\nEnd of input: %s not performed.\n", vb.Name)
			return nil
		}
		if err != nil {
			return err
		}
		if err := vb.Run(ctx, s, vals); err != nil {
			fmt.Fprintf(s.env.Stderr, "managedomain: %s\n", mdErrText(err))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (s *mdSession) chooseVerb(verbs []*mdVerb) (*mdVerb, error) {
	var names []string
	for _, vb := range verbs {
		names = append(names, strings.TrimSuffix(vb.Name, "_service"))
	}
	for {
		s.out("%s? (%s) [%s]: ", strings.Join(names, " or "), strings.Join(names, "/"), names[0])
		line, err := s.readLine()
		if err == io.EOF {
			return nil, errInputEnded
		}
		if err != nil {
			return nil, err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return verbs[0], nil
		}
		for i, n := range names {
			if strings.EqualFold(line, n) || strings.EqualFold(line, verbs[i].Name) {
				return verbs[i], nil
			}
		}
		s.out("Answer %s.\n", strings.Join(names, " or "))
	}
}

// promptParams asks for each of vb's menu parameters, listing registered
// names where that helps and offering defaults in brackets.
func (s *mdSession) promptParams(vb *mdVerb) (mdValues, error) {
	vals := mdValues{}
	for _, p := range vb.Params {
		if p.Prompt == "" {
			continue
		}
		if p.Choices != nil {
			what, names := p.Choices(s, vals)
			if len(names) == 0 {
				s.out("(no %s registered)\n", what)
			} else {
				q := make([]string, len(names))
				for i, n := range names {
					q[i] = strconv.Quote(n)
				}
				s.out("Registered %s: %s\n", what, strings.Join(q, ", "))
			}
		}
		def := ""
		if p.Default != nil {
			def = p.Default(s, vals)
		}
		for {
			if def != "" {
				s.out("%s [%s]: ", p.Prompt, def)
			} else {
				s.out("%s: ", p.Prompt)
			}
			line, err := s.readLine()
			if err == io.EOF {
				return nil, errInputEnded
			}
			if err != nil {
				return nil, err
			}
			line = strings.TrimSpace(line)
			if line == "" {
				line = def
			}
			if line == "" && p.Required {
				s.out("A value is required.\n")
				continue
			}
			if line != "" {
				vals[p.Long] = line
			}
			break
		}
	}
	return vals, nil
}
