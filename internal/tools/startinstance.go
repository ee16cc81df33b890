package tools

import (
	"context"
	"errors"
)

var startinstanceTool = Tool{
	Name: "startinstance", Summary: "start, stop and query gateway instances", Linked: true,
	Run: func(ctx context.Context, env *Env, args []string) error { return errors.New("not implemented yet") },
}
