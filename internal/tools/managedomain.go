package tools

import (
	"context"
	"errors"
)

// Placeholder until the managedomain tool lands (being written now).
var managedomainTool = Tool{
	Name: "managedomain", Summary: "create and change the domain: hosts, groups, instances, services", Linked: true,
	Run: func(ctx context.Context, env *Env, args []string) error { return errors.New("not implemented yet") },
}
