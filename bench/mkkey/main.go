// Command mkkey makes the client application and API key that bench/run's
// gatehouse-apikey target calls its API with: an application "bench"
// allowed API "bench" in the group's embedded Key Property Store (the same
// store and hashing key its instance uses), and a new key, printed on
// standard output. With -n, that many keys (a bulk load in transactions of
// 5,000), one per line on standard output or in -out.
//
//	mkkey -home DIR -group group-3
//	mkkey -home DIR -group group-3 -n 1000000 -out keys.txt
package main

import (
	"bufio"
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
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func main() {
	dir := flag.String("home", "", "the install directory")
	group := flag.String("group", "", "the group's id")
	n := flag.Int("n", 1, "how many keys to make")
	out := flag.String("out", "", "write the keys to this file (default: standard output)")
	flag.Parse()
	if *dir == "" || *group == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: mkkey -home DIR -group GROUP-ID [-n N] [-out FILE]")
		os.Exit(2)
	}
	if err := run(*dir, *group, *n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkkey:", err)
		os.Exit(1)
	}
}

func run(dir, group string, n int, out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
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
	w := bufio.NewWriter(os.Stdout)
	if out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = bufio.NewWriter(f)
	}
	err = m.CreateKeys(ctx, app.ID, n, func(_ apps.Key, key secret.Value) error {
		_, err := fmt.Fprintln(w, key.RevealString())
		return err
	})
	if err != nil {
		return err
	}
	return w.Flush()
}
