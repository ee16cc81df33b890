package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// runShell is the interactive interpreter: "managedomain> " prompts, verbs
// are the command-mode operations without dashes, with their flags
// (create_instance -n "My Server" -g Prod). Errors are printed and the
// interpreter goes on; quit, exit or the end of input ends it.
func runShell(ctx context.Context, s *mdSession) error {
	s.interactive = true
	s.out("managedomain interactive interpreter (%s). Type help for the verbs, quit to leave.\n", s.home.Dir)
	for {
		s.out("managedomain> ")
		line, err := s.readLine()
		if err == io.EOF {
			s.out("\n")
			return nil
		}
		if err != nil {
			return err
		}
		words, err := splitWords(line)
		if err != nil {
			fmt.Fprintf(s.env.Stderr, "error: %v\n", err)
			continue
		}
		if len(words) == 0 {
			continue
		}
		verb, args := words[0], words[1:]
		switch verb {
		case "quit", "exit", "q":
			return nil
		case "help", "?":
			s.shellHelp(args)
			continue
		}
		vb := findVerb(strings.TrimLeft(verb, "-"))
		if vb == nil {
			fmt.Fprintf(s.env.Stderr, "error: unknown verb %q; type help for the list\n", verb)
			continue
		}
		_, vals, err := parseMDArgs(args, vb)
		if err == nil {
			err = vb.Run(ctx, s, vals)
		}
		if err != nil {
			fmt.Fprintf(s.env.Stderr, "error: %s\n", mdErrText(err))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (s *mdSession) shellHelp(args []string) {
	if len(args) > 0 {
		vb := findVerb(strings.TrimLeft(args[0], "-"))
		if vb == nil {
			fmt.Fprintf(s.env.Stderr, "error: unknown verb %q; type help for the list\n", args[0])
			return
		}
		verbHelp(s.env.Stdout, vb)
		return
	}
	s.out("verbs (help VERB for its flags):\n")
	for _, vb := range mdVerbs {
		s.out("  %-16s %s\n", vb.Name, vb.Title)
	}
	s.out("  %-16s %s\n", "quit, exit", "leave the interpreter")
	s.out("Quote names with spaces: create_instance -n \"My Server\" -g 'Prod Group'\n")
}

// mdErrText is an error's text for the menu and the interpreter, without
// the command-mode hint to --help.
func mdErrText(err error) string {
	var ue *UsageError
	if errors.As(err, &ue) {
		return ue.Msg
	}
	return err.Error()
}

// splitWords splits a line into words the way a POSIX shell would for
// quoting: blanks separate words; '...' keeps everything literally; "..."
// keeps everything but \" \\ \$ \` which stand for the character; outside
// quotes a backslash keeps the next character.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated ' quote")
			}
			cur.WriteString(string(rs[i+1 : j]))
			i = j
		case r == '"':
			inWord = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[j+1]) {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, errors.New(`unterminated " quote`)
			}
			i = j
		case r == '\\':
			inWord = true
			if i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			}
		default:
			inWord = true
			cur.WriteRune(r)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
