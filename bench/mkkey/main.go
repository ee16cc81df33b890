// Command mkkey makes the client application and API key that bench/run's
// gatehouse-apikey target calls its API with: an application "bench"
// allowed API "bench" in the group's embedded Key Property Store (the same
// store and hashing key its instance uses), and a new key, printed on
// standard output.
//
//	mkkey -home DIR -group group-3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

func main() {
	dir := flag.String("home", "", "the install directory")
	group := flag.String("group", "", "the group's id")
	flag.Parse()
	if *dir == "" || *group == "" {
		fmt.Fprintln(os.Stderr, "usage: mkkey -home DIR -group GROUP-ID")
		os.Exit(2)
	}
	if err := run(*dir, *group); err != nil {
		fmt.Fprintln(os.Stderr, "mkkey:", err)
		os.Exit(1)
	}
}

func run(dir, group string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := home.Home{Dir: dir}
	store, err := apps.OpenGroupStore(ctx, h, group, groupconf.Defaults().KPS, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	hk, err := apps.LoadOrCreateHashKey(h, group)
	if err != nil {
		return err
	}
	m, err := apps.NewManager(ctx, store, hk)
	if err != nil {
		return err
	}
	app, err := m.App(ctx, "bench")
	if errors.Is(err, kps.ErrNotFound) {
		app, err = m.CreateApp(ctx, apps.App{Name: "bench", Enabled: true, APIs: []string{"bench"}})
	}
	if err != nil {
		return err
	}
	_, key, err := m.CreateKey(ctx, app.ID, time.Time{})
	if err != nil {
		return err
	}
	fmt.Println(key.RevealString())
	return nil
}
