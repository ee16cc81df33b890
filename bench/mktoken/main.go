// Command mktoken makes what bench/run's gatehouse-oauth target needs: an
// OAuth client application "bench" (client_credentials, scope "bench") in
// the group's embedded Key Property Store, a client secret, and an access
// token from the group's running instance (its token endpoint), printed on
// standard output. With -secret-out it also writes "client_id:secret" to a
// file (mode 0600) for load on the token endpoint itself.
//
//	mktoken -home DIR -group group-3 -token-url http://127.0.0.1:PORT/oauth/token
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

func main() {
	dir := flag.String("home", "", "the install directory")
	group := flag.String("group", "", "the group's id")
	tokenURL := flag.String("token-url", "", "the instance's token endpoint")
	secretOut := flag.String("secret-out", "", "also write client_id:secret to this file")
	flag.Parse()
	if *dir == "" || *group == "" || *tokenURL == "" {
		fmt.Fprintln(os.Stderr, "usage: mktoken -home DIR -group GROUP-ID -token-url URL [-secret-out FILE]")
		os.Exit(2)
	}
	if err := run(*dir, *group, *tokenURL, *secretOut); err != nil {
		fmt.Fprintln(os.Stderr, "mktoken:", err)
		os.Exit(1)
	}
}

func run(dir, group, tokenURL, secretOut string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := home.Home{Dir: dir}
	store, err := apps.OpenGroupStore(ctx, h, group, groupconf.Defaults().KPS, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	hk, err := apps.GroupHashKey(ctx, h, group, store)
	if err != nil {
		return err
	}
	m, err := apps.NewManager(ctx, store, hk)
	if err != nil {
		return err
	}
	app, err := m.App(ctx, "bench")
	if errors.Is(err, kps.ErrNotFound) {
		app, err = m.CreateApp(ctx, apps.App{Name: "bench", Enabled: true, APIs: []string{"bench"},
			OAuth: &apps.OAuthClient{GrantTypes: []string{"client_credentials"}, Scopes: []string{"bench"}}})
	}
	if err != nil {
		return err
	}
	_, sec, err := m.CreateClientSecret(ctx, app.ID, time.Time{})
	if err != nil {
		return err
	}
	if secretOut != "" {
		if err := os.WriteFile(secretOut, []byte(app.ID+":"+sec.RevealString()), 0o600); err != nil {
			return err
		}
	}
	cc := clientcredentials.Config{ClientID: app.ID, ClientSecret: sec.RevealString(), TokenURL: tokenURL, Scopes: []string{"bench"}}
	var tokErr error
	for range 50 { // the instance may still be starting
		tok, err := cc.Token(ctx)
		if err == nil {
			fmt.Println(tok.AccessToken)
			return nil
		}
		tokErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("getting a token: %w", tokErr)
}
