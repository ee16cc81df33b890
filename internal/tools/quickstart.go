package tools

import (
	"context"
	"errors"
)

var quickstartTool = Tool{
	Name: "quickstart", Summary: "create a QuickStart domain with a running instance and a sample API",
	Run: func(ctx context.Context, env *Env, args []string) error { return errors.New("not implemented yet") },
}
