package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// fault makes the matching calls of a faulty store fail: op ("get",
// "insert", "update", "delete", "query") and table, after skip matching
// calls have passed, times times (0: every one after).
type fault struct {
	op, table string
	skip      int
	times     int // failures before the calls pass again; 0: no end
	err       error
}

// faulty is a store that fails on demand, call by call (the failures
// of one step in the middle of a flow).
type faulty struct {
	kps.Store
	mu     sync.Mutex
	faults []*fault
}

func (f *faulty) set(fs ...*fault) {
	f.mu.Lock()
	f.faults = fs
	f.mu.Unlock()
}

func (f *faulty) check(op, table string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range f.faults {
		if x.op == op && x.table == table {
			if x.skip > 0 {
				x.skip--
				return nil
			}
			if x.times < 0 {
				return nil
			}
			if x.times > 0 {
				x.times--
				if x.times == 0 {
					x.times = -1
				}
			}
			return x.err
		}
	}
	return nil
}

func (f *faulty) Get(ctx context.Context, table string, key any) (kps.Row, error) {
	if err := f.check("get", table); err != nil {
		return kps.Row{}, err
	}
	return f.Store.Get(ctx, table, key)
}
func (f *faulty) Insert(ctx context.Context, table string, v map[string]any) (kps.Row, error) {
	if err := f.check("insert", table); err != nil {
		return kps.Row{}, err
	}
	return f.Store.Insert(ctx, table, v)
}
func (f *faulty) Update(ctx context.Context, table string, r kps.Row) (kps.Row, error) {
	if err := f.check("update", table); err != nil {
		return kps.Row{}, err
	}
	return f.Store.Update(ctx, table, r)
}
func (f *faulty) Delete(ctx context.Context, table string, key any, version int64) error {
	if err := f.check("delete", table); err != nil {
		return err
	}
	return f.Store.Delete(ctx, table, key, version)
}
func (f *faulty) List(ctx context.Context, table string, page kps.Page) (kps.Result, error) {
	if err := f.check("list", table); err != nil {
		return kps.Result{}, err
	}
	return f.Store.List(ctx, table, page)
}
func (f *faulty) Query(ctx context.Context, table, p string, v any, page kps.Page) (kps.Result, error) {
	if err := f.check("query", table); err != nil {
		return kps.Result{}, err
	}
	return f.Store.Query(ctx, table, p, v, page)
}

var (
	errDown     = kps.Unavailable(errors.New("connection refused"))
	errConflict = fmt.Errorf("%w: changed meanwhile", kps.ErrConflict)
)

// faultyEnv is an env whose store fails on demand.
func faultyEnv(t *testing.T, opts ...envOpt) (*env, *faulty) {
	var f *faulty
	e := newEnv(t, append(opts, func(o *Options) {
		f = &faulty{Store: o.Store}
		o.Store = f
	})...)
	return e, f
}

// status posts form to the token endpoint as web and returns the status and
// the error code.
func (e *env) tokenAs(client, secret string, form url.Values) (int, string, map[string]any) {
	e.t.Helper()
	resp, m := e.post("/oauth/token", form, client, secret)
	code, _ := m["error"].(string)
	return resp.StatusCode, code, m
}

func redeemForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

// TestCodeRedemptionFaults: a store failing or changing under a code's
// redemption: 503 when it fails, invalid_grant when another request
// redeemed the code meanwhile (and what it produced revoked); never a
// token.
func TestCodeRedemptionFaults(t *testing.T) {
	// JWT access tokens: the refresh token is the only row inserted.
	e, f := faultyEnv(t, jwtFormat)
	code, verifier := e.code("web", redirectURI, "read")
	f.set(&fault{op: "insert", table: TokensTable, err: errDown})
	if st, ec, m := e.tokenAs("web", webSecret, redeemForm(code, verifier)); st != 503 || ec != ErrCodeUnavailable {
		t.Errorf("the refresh token not stored: %d %v", st, m)
	}
	// Redeemed meanwhile: the update conflicts; the family is revoked.
	f.set(&fault{op: "update", table: CodesTable, err: errConflict})
	code, verifier = e.code("web", redirectURI, "read")
	if st, ec, m := e.tokenAs("web", webSecret, redeemForm(code, verifier)); st != 400 || ec != ErrCodeInvalidGrant {
		t.Errorf("a code redeemed meanwhile: %d %v", st, m)
	}
	row, _ := e.store.Get(context.Background(), CodesTable, e.srv.hash.hash(code))
	if fam, err := e.store.Get(context.Background(), FamiliesTable, str(row, "familyId")); err != nil || !flag(fam, "revoked") {
		t.Errorf("the family of a code redeemed meanwhile: %v %v", fam.Values, err)
	}
	// … and the revocation cannot be written: 503.
	f.set(&fault{op: "update", table: CodesTable, err: errConflict}, &fault{op: "get", table: FamiliesTable, err: errDown})
	code, verifier = e.code("web", redirectURI, "read")
	if st, ec, m := e.tokenAs("web", webSecret, redeemForm(code, verifier)); st != 503 || ec != ErrCodeUnavailable {
		t.Errorf("a code redeemed meanwhile, the revocation failing: %d %v", st, m)
	}
	// The code row gone meanwhile (purged): the same.
	f.set(&fault{op: "update", table: CodesTable, err: fmt.Errorf("%w: gone", kps.ErrNotFound)})
	code, verifier = e.code("web", redirectURI, "read")
	if st, ec, m := e.tokenAs("web", webSecret, redeemForm(code, verifier)); st != 400 || ec != ErrCodeInvalidGrant {
		t.Errorf("a code gone meanwhile: %d %v", st, m)
	}
	// The family created meanwhile (a replay revoked it first).
	f.set(&fault{op: "insert", table: FamiliesTable, err: fmt.Errorf("%w: taken", kps.ErrExists)})
	code, verifier = e.code("web", redirectURI, "read")
	if st, ec, m := e.tokenAs("web", webSecret, redeemForm(code, verifier)); st != 400 || ec != ErrCodeInvalidGrant {
		t.Errorf("a family created meanwhile: %d %v", st, m)
	}
	f.set()
	// A registry that cannot answer: IssueCode's error is an outage, not a refusal.
	e.srv.clients = failingClients{}
	if _, err := e.srv.IssueCode(context.Background(), CodeGrant{ClientID: "web", UserID: "u", RedirectURI: redirectURI, CodeChallenge: S256Challenge(verifier)}); !errors.Is(err, kps.ErrUnavailable) || errors.Is(err, ErrInvalidCodeGrant) {
		t.Errorf("IssueCode with the registry down: %v", err)
	}
}

// TestRefreshFaults: the refresh grant with its family gone or revoked,
// with a bad scope, with the store failing or changing at each step.
func TestRefreshFaults(t *testing.T) {
	ctx := context.Background()
	e, f := faultyEnv(t)
	pair := func() (rt, fam string) {
		t.Helper()
		code, verifier := e.code("web", redirectURI, "read", "write")
		st, _, m := e.tokenAs("web", webSecret, redeemForm(code, verifier))
		rt, _ = m["refresh_token"].(string)
		if st != 200 || rt == "" {
			t.Fatalf("redemption: %d %v", st, m)
		}
		row, err := e.store.Get(ctx, TokensTable, e.srv.hash.hash(rt))
		if err != nil {
			t.Fatal(err)
		}
		return rt, str(row, "familyId")
	}
	want := func(what string, rt string, status int, code string) {
		t.Helper()
		if st, ec, m := e.tokenAs("web", webSecret, refreshForm(rt)); st != status || ec != code {
			t.Errorf("%s: %d %v, want %d %s", what, st, m, status, code)
		}
	}
	// A scope that is not a scope token.
	rt, _ := pair()
	form := refreshForm(rt)
	form.Set("scope", `read "write"`)
	if st, ec, m := e.tokenAs("web", webSecret, form); st != 400 || ec != ErrCodeInvalidScope {
		t.Errorf("a bad scope: %d %v", st, m)
	}
	// Its family's row gone: refused.
	rt, fam := pair()
	if err := e.store.Delete(ctx, FamiliesTable, fam, kps.AnyVersion); err != nil {
		t.Fatal(err)
	}
	want("a refresh token whose family is gone", rt, 400, ErrCodeInvalidGrant)
	// Its family revoked (its tokens not deleted yet): refused.
	rt, fam = pair()
	row, _ := e.store.Get(ctx, FamiliesTable, fam)
	row.Values["revoked"] = true
	if _, err := e.store.Update(ctx, FamiliesTable, row); err != nil {
		t.Fatal(err)
	}
	want("a refresh token whose family is revoked", rt, 400, ErrCodeInvalidGrant)
	// A reuse whose revocation cannot be written: 503.
	rt, _ = pair()
	want("the first use", rt, 200, "")
	f.set(&fault{op: "get", table: FamiliesTable, err: errDown})
	want("a reuse with the families unreadable", rt, 503, ErrCodeUnavailable)
	f.set()
	// Used meanwhile by another request: a reuse, the family revoked.
	rt, fam = pair()
	f.set(&fault{op: "update", table: TokensTable, err: errConflict})
	want("a refresh token used meanwhile", rt, 400, ErrCodeInvalidGrant)
	if row, err := e.store.Get(ctx, FamiliesTable, fam); err != nil || !flag(row, "revoked") {
		t.Errorf("the family of a refresh token used meanwhile: %v %v", row.Values, err)
	}
	// … and the revocation fails: 503.
	rt, _ = pair()
	f.set(&fault{op: "update", table: TokensTable, err: errConflict}, &fault{op: "get", table: FamiliesTable, skip: 1, err: errDown})
	want("a refresh token used meanwhile, the revocation failing", rt, 503, ErrCodeUnavailable)
	// The token's update failing: 503.
	rt, _ = pair()
	f.set(&fault{op: "update", table: TokensTable, err: errDown})
	want("the token's update failing", rt, 503, ErrCodeUnavailable)
	// Without a scope: the grant's scopes.
	rt, _ = pair()
	f.set()
	if st, _, m := e.tokenAs("web", webSecret, refreshForm(rt)); st != 200 || m["scope"] != "read write" {
		t.Errorf("a refresh without scope: %d %v, want the grant's scopes", st, m)
	}
	// The token row gone meanwhile.
	rt, _ = pair()
	f.set(&fault{op: "update", table: TokensTable, err: fmt.Errorf("%w: gone", kps.ErrNotFound)})
	want("a refresh token gone meanwhile", rt, 400, ErrCodeInvalidGrant)
	// The family changed meanwhile (revoked, most likely): refused.
	rt, _ = pair()
	f.set(&fault{op: "update", table: FamiliesTable, err: errConflict})
	want("a family changed meanwhile", rt, 400, ErrCodeInvalidGrant)
	// The family's update failing: 503.
	rt, _ = pair()
	f.set(&fault{op: "update", table: FamiliesTable, err: errDown})
	want("the family's update failing", rt, 503, ErrCodeUnavailable)
	// The new access token not stored (the refresh token would be): 503, no token.
	rt, _ = pair()
	f.set(&fault{op: "insert", table: TokensTable, times: 1, err: errDown})
	want("the new access token not stored", rt, 503, ErrCodeUnavailable)
	// The new refresh token not stored: 503.
	rt, _ = pair()
	f.set(&fault{op: "insert", table: TokensTable, skip: 1, err: errDown})
	want("the new refresh token not stored", rt, 503, ErrCodeUnavailable)
	f.set()
}

// TestIntrospectRevokeEdges: a refresh token whose family row is gone is
// inactive; one without a user (a row written so) has its client as
// subject; an access token deleted meanwhile is revoked all the same; an
// access token that cannot be deleted is 503; an error that is not an
// outage is 500.
func TestIntrospectRevokeEdges(t *testing.T) {
	ctx := context.Background()
	e, f := faultyEnv(t)
	code, verifier := e.code("web", redirectURI, "read")
	_, _, m := e.tokenAs("web", webSecret, redeemForm(code, verifier))
	at, rt := m["access_token"].(string), m["refresh_token"].(string)
	row, err := e.store.Get(ctx, TokensTable, e.srv.hash.hash(rt))
	if err != nil {
		t.Fatal(err)
	}
	row.Values["userId"] = ""
	if row, err = e.store.Update(ctx, TokensTable, row); err != nil {
		t.Fatal(err)
	}
	_, m = e.post("/oauth/introspect", url.Values{"token": {rt}}, "web", webSecret)
	if m["active"] != true || m["sub"] != "web" {
		t.Errorf("a refresh token without a user: %v", m)
	}
	if err := e.store.Delete(ctx, FamiliesTable, str(row, "familyId"), kps.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if e.activeTo(rt, "web", webSecret) {
		t.Error("a refresh token whose family is gone is active")
	}
	if _, err := e.srv.Verify(ctx, rt); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify of a refresh token: %v", err)
	}
	// Revoking an access token deleted meanwhile: done (200).
	at = ccToken(t, e, "svc", svcSecret)
	f.set(&fault{op: "delete", table: TokensTable, err: fmt.Errorf("%w: gone", kps.ErrNotFound)})
	if resp, _ := e.post("/oauth/revoke", url.Values{"token": {at}}, "svc", svcSecret); resp.StatusCode != 200 {
		t.Errorf("revoking an access token deleted meanwhile: %d", resp.StatusCode)
	}
	f.set(&fault{op: "delete", table: TokensTable, err: errDown})
	if resp, m := e.post("/oauth/revoke", url.Values{"token": {at}}, "svc", svcSecret); resp.StatusCode != 503 {
		t.Errorf("revoking an access token that cannot be deleted: %d %v", resp.StatusCode, m)
	}
	f.set(&fault{op: "get", table: TokensTable, err: errors.New("disk I/O error")})
	if resp, m := e.post("/oauth/revoke", url.Values{"token": {at}}, "svc", svcSecret); resp.StatusCode != 500 || m["error"] != ErrCodeServerError {
		t.Errorf("a store error that is not an outage: %d %v", resp.StatusCode, m)
	}
	f.set()
	if !e.active(at) {
		t.Error("the access token was deleted by a failed revocation")
	}
}

// TestHandleIntrospectRefresh: an active refresh token's introspection is
// 200 as Handle returns it (an HTTP client would read a 1xx as 200).
func TestHandleIntrospectRefresh(t *testing.T) {
	e := newEnv(t)
	code, verifier := e.code("web", redirectURI, "read")
	_, _, m := e.tokenAs("web", webSecret, redeemForm(code, verifier))
	rt, _ := m["refresh_token"].(string)
	resp, ok := e.srv.Handle(context.Background(), &Request{Method: "POST", Path: "/oauth/introspect",
		Body:   []byte(url.Values{"token": {rt}, "client_id": {"web"}, "client_secret": {webSecret}}.Encode()),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}})
	if !ok || resp.Status != 200 || !strings.Contains(string(resp.Body), `"active":true`) {
		t.Errorf("introspection of an active refresh token: %v %d %s", ok, resp.Status, resp.Body)
	}
}

// TestIntrospectRevokedFamily: a refresh token of a revoked grant is
// inactive even while its row is still there (revocation marks the family
// first, then deletes its tokens).
func TestIntrospectRevokedFamily(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	code, verifier := e.code("web", redirectURI, "read")
	_, _, m := e.tokenAs("web", webSecret, redeemForm(code, verifier))
	rt, _ := m["refresh_token"].(string)
	row, err := e.store.Get(ctx, TokensTable, e.srv.hash.hash(rt))
	if err != nil {
		t.Fatal(err)
	}
	fam, err := e.store.Get(ctx, FamiliesTable, str(row, "familyId"))
	if err != nil {
		t.Fatal(err)
	}
	fam.Values["revoked"] = true
	if _, err := e.store.Update(ctx, FamiliesTable, fam); err != nil {
		t.Fatal(err)
	}
	if e.activeTo(rt, "web", webSecret) {
		t.Error("a refresh token of a revoked grant is active")
	}
	// Handle's status for a token request.
	resp, ok := e.srv.Handle(ctx, &Request{Method: "POST", Path: "/oauth/token",
		Body:   []byte(url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {svcSecret}}.Encode()),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}})
	if !ok || resp.Status != 200 {
		t.Errorf("a token request: %v %d %s", ok, resp.Status, resp.Body)
	}
}
