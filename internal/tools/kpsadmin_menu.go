package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// kpsadmin's numbered menu: kpsadmin without a verb. It asks for the group
// and the instance when this host has several, then shows the verbs by
// their menu numbers; each asks for what it needs (listing what exists) and
// runs as in command mode. An error is printed and the menu goes on; "q" or
// the end of standard input ends it (exit 0).

// errSkip ends a menu operation that was cancelled (nothing done).
var errSkip = errors.New("cancelled")

// ask prints the choices and prompt and returns the answer (def when
// empty). End of input is errInputEnded.
func (s *kpsSession) ask(prompt, def, what string, choices []string) (string, error) {
	if what != "" {
		if len(choices) == 0 {
			s.out("(no %s)\n", what)
		} else {
			s.out("%s: %s\n", strings.ToUpper(what[:1])+what[1:], quoteAll(choices))
		}
	}
	if def != "" {
		s.out("%s [%s]: ", prompt, def)
	} else {
		s.out("%s: ", prompt)
	}
	line, err := s.readLine()
	if err == io.EOF {
		return "", errInputEnded
	}
	if err != nil {
		return "", err
	}
	if line = strings.TrimSpace(line); line == "" {
		line = def
	}
	return line, nil
}

func (s *kpsSession) yes(prompt string) (bool, error) {
	a, err := s.ask(prompt+" (y/n)", "n", "", nil)
	if err != nil {
		return false, err
	}
	return strings.EqualFold(a, "y") || strings.EqualFold(a, "yes"), nil
}

// chooseTarget asks for the group and the instance where there is a choice.
func (s *kpsSession) chooseTarget() error {
	if !s.o.has("group") {
		groups := s.localGroups()
		if len(groups) > 1 {
			g, err := s.ask("Group", groups[0].Name, "groups with instances on this host", groupNames(groups))
			if err != nil {
				return err
			}
			s.o.vals["group"] = g
		}
	}
	if !s.o.has("instance") {
		if arg, ok := s.o.vals["group"]; ok {
			if g, err := s.topo.FindGroup(arg); err == nil {
				if local := s.localInstances(g); len(local) > 1 {
					i, err := s.ask("Instance", local[0].Service.Name, fmt.Sprintf("instances of group %q on this host", g.Name), instanceNames(local))
					if err != nil {
						return err
					}
					s.o.vals["instance"] = i
				}
			}
		} else if groups := s.localGroups(); len(groups) == 1 {
			if local := s.localInstances(groups[0]); len(local) > 1 {
				i, err := s.ask("Instance", local[0].Service.Name, fmt.Sprintf("instances of group %q on this host", groups[0].Name), instanceNames(local))
				if err != nil {
					return err
				}
				s.o.vals["instance"] = i
			}
		}
	}
	return s.resolve(false)
}

func (s *kpsSession) printMenu() {
	s.out("\nkpsadmin menu: group %q, instance %q (%s)\n", s.t.gname, s.t.iname, s.t.dir())
	for _, vb := range kpsVerbs {
		mark := ""
		if vb.Later != "" {
			mark = " (not available yet)"
		}
		s.out("%3d) %-10s %s%s\n", vb.Menu, vb.Name, vb.Title, mark)
	}
	s.out("  q) Quit\n")
}

func runKpsMenu(ctx context.Context, s *kpsSession) error {
	if err := s.chooseTarget(); err != nil {
		if err == errInputEnded {
			s.out("\n")
			return nil
		}
		return err
	}
	keep := map[string]string{}
	for _, k := range kpsCommon {
		if v, ok := s.o.vals[k]; ok {
			keep[k] = v
		}
	}
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
		var vb *kpsVerb
		for _, v := range kpsVerbs {
			if fmt.Sprint(v.Menu) == choice || v.Name == choice {
				vb = v
			}
		}
		if vb == nil {
			s.out("There is no option %q; enter a number from 1 to %d, or q to quit.\n", choice, len(kpsVerbs))
			continue
		}
		if vb.Later != "" {
			s.out("%s is not available yet: %s.\n", vb.Name, vb.Later)
			continue
		}
		s.o.vals = map[string]string{}
		for k, v := range keep {
			s.o.vals[k] = v
		}
		if vb.Ask != nil {
			err := vb.Ask(ctx, s)
			switch {
			case err == errInputEnded:
				s.out("\nEnd of input: %s not performed.\n", vb.Name)
				return nil
			case err == errSkip:
				continue
			case err != nil:
				fmt.Fprintf(s.env.Stderr, "kpsadmin: %v\n", err)
				continue
			}
		}
		if err := s.run(ctx, vb); err != nil {
			if err == errInputEnded {
				s.out("\n")
				return nil
			}
			fmt.Fprintf(s.env.Stderr, "kpsadmin: %v\n", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// tableAliases lists the store's tables, for the prompts.
func (s *kpsSession) tableAliases(ctx context.Context) ([]string, error) {
	st, err := s.open(ctx, false)
	if err != nil {
		return nil, err
	}
	tables, err := st.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range tables {
		out = append(out, t.Alias)
	}
	return out, nil
}

// askTable asks for a table; optional: an empty answer is all tables.
func (s *kpsSession) askTable(ctx context.Context, prompt string, optional bool) error {
	aliases, err := s.tableAliases(ctx)
	if err != nil {
		return err
	}
	for {
		t, err := s.ask(prompt, "", "tables", aliases)
		if err != nil {
			return err
		}
		if t == "" && optional {
			return nil
		}
		if t != "" {
			s.o.vals["table"] = t
			return nil
		}
		s.out("A table is required.\n")
	}
}

func kpsAskListRows(ctx context.Context, s *kpsSession) error {
	return s.askTable(ctx, "Table", false)
}

func kpsAskBackup(ctx context.Context, s *kpsSession) error {
	return s.askTable(ctx, "Table to back up (empty: every table)", true)
}

// kpsAskClear asks for the table and for the alias again as the
// confirmation; it stands for --yes (and --force on a Gatehouse table).
func kpsAskClear(ctx context.Context, s *kpsSession) error {
	if err := s.askTable(ctx, "Table to clear", false); err != nil {
		return err
	}
	alias := s.o.vals["table"]
	st, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	if _, err := s.table(ctx, st, alias); err != nil {
		return err
	}
	n, err := st.Count(ctx, alias)
	if err != nil {
		return err
	}
	if builtin(alias) {
		s.out("Table %q holds Gatehouse's own data: clearing it stops every client application's API keys at once.\n", alias)
	}
	a, err := s.ask(fmt.Sprintf("Type %q to clear its %d rows (empty: cancel)", alias, n), "", "", nil)
	if err != nil {
		return err
	}
	if a != alias {
		s.out("Not cleared.\n")
		return errSkip
	}
	s.o.vals["yes"], s.o.vals["force"] = "true", "true"
	return nil
}

func kpsAskRestore(ctx context.Context, s *kpsSession) error {
	backups, err := s.backups()
	if err != nil {
		return err
	}
	if len(backups) == 0 {
		s.out("No backups in %s (option 2 makes one).\n", s.backupDir())
		return errSkip
	}
	s.out("Backups of instance %q, newest first:\n", s.t.iname)
	for _, b := range backups {
		s.out("  %s  %s  %d bytes\n", b.uuid, b.mod.UTC().Format("2006-01-02 15:04:05Z"), b.size)
	}
	id, err := s.ask("Backup UUID", backups[0].uuid, "", nil)
	if err != nil {
		return err
	}
	s.o.vals["uuid"] = id
	t, err := s.ask("Table to restore (empty: every table of the backup)", "", "", nil)
	if err != nil {
		return err
	}
	if t != "" {
		s.o.vals["table"] = t
	}
	force, err := s.yes("Replace the rows of tables that have some")
	if err != nil {
		return err
	}
	if force {
		s.o.vals["force"] = "true"
	}
	return nil
}
