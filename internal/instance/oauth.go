package instance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
	"github.com/gatehouse-gw/gatehouse/internal/policy/jwt"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
)

// wellKnownAS is the authorization server's metadata (RFC 8414).
var wellKnownAS = []byte("/.well-known/oauth-authorization-server")

// oauthTimeout bounds one request to the authorization server.
const oauthTimeout = 10 * time.Second

// oauthServer is the group's authorization server in one runtime: built
// with the configuration, its purge and key pruning running until the
// runtime is replaced.
type oauthServer struct {
	srv    *oauth.Server
	prefix []byte // pathPrefix + "/"
	keys   *oauth.KeySet
}

// buildOAuth makes the authorization server of cfg (nil when the group has
// none) on the group's store. Its background work starts with start.
func buildOAuth(cfg *groupconf.Config, gs *groupStore) (*oauthServer, error) {
	if !cfg.OAuth.Enabled {
		return nil, nil
	}
	if gs == nil {
		return nil, errors.New("the authorization server needs the group's key property store")
	}
	sc := cfg.OAuth.ServerConfig().WithDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), kpsOpenTimeout)
	defer cancel()
	var keys *oauth.KeySet
	if sc.AccessTokenFormat == oauth.FormatJWT {
		var err error
		if keys, err = oauth.LoadKeySet(gs.home, gs.keysDir, cfg.OAuth.SigningAlgorithm, nil); err != nil {
			return nil, fmt.Errorf("the authorization server's signing keys: %w", err)
		}
	}
	registry := apps.NewRegistry(gs.cache, gs.store)
	users, err := authorize.NewUsers(ctx, gs.store)
	if err != nil {
		return nil, err
	}
	var az *authorize.Authorizer
	srv, err := oauth.New(ctx, oauth.Options{
		Config: sc, Store: gs.store, HashKey: apps.OAuthHashKey(gs.hashKey), Clients: registry, Keys: keys,
		Logger: gs.log, Reader: gs.cache,
		Authorize: func(ctx context.Context, r *oauth.Request) *oauth.Response {
			resp := az.Handle(ctx, &authorize.Request{Method: r.Method, RawQuery: r.RawQuery, Header: r.Header, Body: r.Body, TLS: r.TLS})
			return &oauth.Response{Status: resp.Status, Header: resp.Header, Body: resp.Body}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("the authorization server: %w", err)
	}
	az, err = authorize.New(authorize.Config{
		Issuer: sc.Issuer, Path: sc.PathPrefix + "/authorize", Key: apps.AuthorizeSigningKey(gs.hashKey),
		Clients: registry, Users: users, Codes: codeIssuer{srv}, Log: gs.log,
	})
	if err != nil {
		return nil, err
	}
	return &oauthServer{srv: srv, prefix: []byte(sc.PathPrefix + "/"), keys: keys}, nil
}

// start runs the purge of expired tokens and codes, and the pruning of
// signing keys no token needs any more, until ctx ends.
func (o *oauthServer) start(ctx context.Context, lifetime time.Duration) {
	if o == nil {
		return
	}
	go o.srv.Run(ctx)
	if o.keys != nil {
		go func() {
			t := time.NewTicker(oauth.PurgeInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					o.keys.Prune(lifetime)
				}
			}
		}()
	}
}

// verifier is the oauth policy's check of a token.
func (o *oauthServer) verifier() jwt.TokenVerifier {
	if o == nil {
		return nil
	}
	return func(ctx context.Context, token string) (jwt.Token, error) {
		c, err := o.srv.Verify(ctx, token)
		switch {
		case errors.Is(err, oauth.ErrInvalidToken):
			return jwt.Token{}, fmt.Errorf("%w: %v", jwt.ErrInvalidToken, err)
		case err != nil:
			return jwt.Token{}, err
		}
		return jwt.Token{Subject: c.Subject, ClientID: c.ClientID, Scopes: c.Scopes, ExpiresAt: c.ExpiresAt}, nil
	}
}

// codeIssuer gives the authorization endpoint's decisions to the server.
type codeIssuer struct{ srv *oauth.Server }

func (c codeIssuer) IssueCode(ctx context.Context, r authorize.CodeRequest) (string, error) {
	return c.srv.IssueCode(ctx, oauth.CodeGrant{ClientID: r.ClientID, UserID: r.UserID, RedirectURI: r.RedirectURI, Scopes: r.Scopes,
		CodeChallenge: r.CodeChallenge, CodeChallengeMethod: "S256", Nonce: r.Nonce, AuthTime: time.Now()})
}

// serves reports whether path is the authorization server's.
func (o *oauthServer) serves(path []byte) bool {
	return o != nil && (bytes.HasPrefix(path, o.prefix) || bytes.Equal(path, wellKnownAS))
}

// serveOAuth answers a request to the authorization server.
func (o *oauthServer) serve(w h1.ResponseWriter, r *h1.Request) {
	if r.ContentLength > oauth.MaxBodyBytes {
		proxy.WriteError(w, http.StatusRequestEntityTooLarge, "the request body is larger than the authorization server accepts")
		return
	}
	r.MaxBodyBytes = oauth.MaxBodyBytes + 1
	body, err := io.ReadAll(io.LimitReader(r.Body, oauth.MaxBodyBytes+1))
	if err != nil {
		proxy.WriteError(w, http.StatusBadRequest, "the request body could not be read")
		return
	}
	h := make(http.Header, r.Header.Len())
	r.Header.Each(func(name, value []byte) bool {
		h.Add(string(name), string(value))
		return true
	})
	req := &oauth.Request{Method: string(r.Method), Path: string(r.Path), RawQuery: string(r.Query), Header: h, Body: body,
		RemoteAddr: r.RemoteAddr.Addr(), TLS: r.TLS != nil}
	ctx, cancel := context.WithTimeout(context.Background(), oauthTimeout)
	defer cancel()
	resp, ok := o.srv.Handle(ctx, req)
	if !ok {
		proxy.WriteError(w, http.StatusNotFound, "no endpoint of the authorization server here")
		return
	}
	wh := w.Header()
	for k, vs := range resp.Header {
		for _, v := range vs {
			wh.AddString(k, v)
		}
	}
	wh.SetString("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	if string(r.Method) != http.MethodHead {
		_, _ = w.Write(resp.Body)
	}
}
