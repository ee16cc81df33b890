// Package tools holds the operator tools, one file each (managedomain.go,
// startinstance.go, quickstart.go, ...). The gatehouse binary picks a tool
// from its own name (busybox style: posix/bin/startinstance is a link to
// gatehouse) or from its first argument (gatehouse startinstance ...).
package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Env is what a tool may touch of the outside world. Tests give their own.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Exe is the path of the running binary (to copy into posix/bin and to
	// re-execute for daemon starts).
	Exe string
}

// Tool is one operator tool.
type Tool struct {
	Name    string
	Summary string
	// Linked tools get a link named after them in posix/bin (every tool
	// but version: with posix/bin on the PATH, each runs by its name).
	Linked bool
	Run    func(ctx context.Context, env *Env, args []string) error
}

// table is filled once in init (not in a variable initialiser: tools refer
// back to the table, e.g. to know which names to link) and never changed.
var table []Tool

func init() {
	table = []Tool{managedomainTool, startinstanceTool, nodemanagerTool, quickstartTool, auditTool, clientTool,
		deployTool, rollbackTool, deploymentsTool, archiveTool, kpsadminTool, backupTool, restoreTool, drTool, upgradeTool, versionTool}
}

// All returns the tools, in the order help lists them.
func All() []Tool { return table }

// LinkedNames lists the tool names installed as links in posix/bin.
func LinkedNames() []string {
	var names []string
	for _, t := range All() {
		if t.Linked {
			names = append(names, t.Name)
		}
	}
	return names
}

// ExitError ends a tool with a specific exit code. A nil Err prints nothing.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// UsageError is a wrong invocation: exit code 2, with a hint to --help.
type UsageError struct {
	Tool string
	Msg  string
}

func (e *UsageError) Error() string {
	return fmt.Sprintf("%s: %s (see %s --help)", e.Tool, e.Msg, e.Tool)
}

func usagef(tool, format string, args ...any) error {
	return &UsageError{Tool: tool, Msg: fmt.Sprintf(format, args...)}
}

// Version is set at build time with -ldflags "-X .../internal/tools.Version=...".
var Version = "dev"

var versionTool = Tool{
	Name:    "version",
	Summary: "print the Gatehouse version",
	Run: func(ctx context.Context, env *Env, args []string) error {
		fmt.Fprintf(env.Stdout, "gatehouse %s\n", Version)
		return nil
	},
}

func find(name string) (Tool, bool) {
	for _, t := range All() {
		if t.Name == name {
			return t, true
		}
	}
	return Tool{}, false
}

func mainUsage(w io.Writer) {
	fmt.Fprintf(w, "Gatehouse: an API gateway and the machinery to operate it.\n\nusage: gatehouse TOOL [ARGS...]   (or run a tool by its own name: posix/bin/TOOL ...)\n\ntools:\n")
	for _, t := range All() {
		fmt.Fprintf(w, "  %-14s %s\n", t.Name, t.Summary)
	}
	fmt.Fprintf(w, "\nEvery tool takes --help. The install directory is $GATEHOUSE_HOME, or the directory\nabove posix/bin when the binary runs from there, or /opt/gatehouse/apigateway.\n")
}

// Main runs the tool named by argv[0] or argv[1] and returns the exit code.
func Main(ctx context.Context, argv []string, env *Env) int {
	name := filepath.Base(argv[0])
	args := argv[1:]
	t, ok := find(name)
	if !ok {
		if len(args) == 0 {
			mainUsage(env.Stderr)
			return 2
		}
		switch args[0] {
		case "-h", "--help", "help":
			mainUsage(env.Stdout)
			return 0
		case "--version":
			args[0] = "version"
		}
		t, ok = find(args[0])
		if !ok {
			fmt.Fprintf(env.Stderr, "gatehouse: unknown tool %q\n\n", args[0])
			mainUsage(env.Stderr)
			return 2
		}
		args = args[1:]
	}
	return Exit(env.Stderr, t.Name, t.Run(ctx, env, args))
}

// Exit prints err for tool and returns the process exit code.
func Exit(w io.Writer, tool string, err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintf(w, "%s: %s\n", tool, ee.Err)
		}
		return ee.Code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintln(w, ue.Error())
		return 2
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(w, "%s: interrupted\n", tool)
		return 130
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, tool+":") {
		msg = tool + ": " + msg
	}
	fmt.Fprintln(w, msg)
	return 1
}

// DefaultEnv is the process's own environment.
func DefaultEnv() *Env {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Exe: exe}
}
