package tools

import (
	"context"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

var auditTool = Tool{
	Name: "audit", Summary: "verify the domain audit log's hash chain (audit verify)",
	Linked: true,
	Run:    runAudit,
}

const auditHelp = `usage: gatehouse audit verify

Checks the hash chain of this install directory's audit log
(conf/audit/audit.log and its rotated files audit.000001.log, ..., oldest
first; see docs/audit.md): sequence numbers without gaps across the files,
each entry's prev the SHA-256 of the line before it, each entry's own hash,
and the newest entry at least the one conf/audit/audit.head names.

Exit status: 0 when the chain holds, 1 naming the first bad entry when an
entry was removed, reordered, altered or cut off, 2 for a wrong invocation.

  --help                this help`

func runAudit(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return usagef("audit", "want a subcommand: verify")
	}
	for _, a := range args {
		if a == "--help" || a == "-h" || a == "help" {
			fmt.Fprintln(env.Stdout, auditHelp)
			return nil
		}
	}
	if args[0] != "verify" {
		return usagef("audit", "unknown subcommand %q; accepted: verify", args[0])
	}
	if len(args) > 1 {
		return usagef("audit", "verify takes no arguments, got %q", args[1])
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	r, err := audit.Verify(h)
	if err != nil {
		return err
	}
	if !r.Verified {
		return &ExitError{Code: 1, Err: fmt.Errorf("audit log %s: entry %d is bad: %s", audit.File(h), r.FirstBad, r.Reason)}
	}
	files := ""
	if r.Files > 1 {
		files = fmt.Sprintf(" in %d files (%d rotated)", r.Files, r.Files-1)
	}
	fmt.Fprintf(env.Stdout, "audit log %s: %d entries%s, hash chain verified\n", audit.File(h), r.LastSeq, files)
	return nil
}
