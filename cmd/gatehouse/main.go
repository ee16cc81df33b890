// Command gatehouse is the one Gatehouse binary: every operator tool is a
// subcommand, and the binary acts as a tool when invoked under its name.
package main

import (
	"context"
	"os"

	"github.com/gatehouse-gw/gatehouse/internal/tools"
)

func main() {
	os.Exit(tools.Main(context.Background(), os.Args, tools.DefaultEnv()))
}
