package authorize

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// UsersTable is the alias of the group's users table in its KPS: the
// people who log in on the authorization page (not the management plane's
// administrators, who live in conf/users.json).
const UsersTable = "oauth_users"

// UsersTableDef is its definition.
func UsersTableDef() kps.Table {
	return kps.Table{
		Collection: "Gatehouse", Name: "OAuth users", Alias: UsersTable,
		Properties: []kps.Property{
			{Name: "id", Type: kps.String, Generated: true},
			{Name: "username", Type: kps.String},
			{Name: "name", Type: kps.String},
			{Name: "passwordHash", Type: kps.String},
			{Name: "enabled", Type: kps.Boolean},
			{Name: "createdAt", Type: kps.Long},
		},
		PrimaryKey: "id", SecondaryKey: "username",
	}
}

// User is one user (never with its password).
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Name      string    `json:"name,omitempty"`
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"createdAt"`
}

// ErrBadLogin: an unknown user, a wrong password or a disabled user (the
// login page does not tell which).
var ErrBadLogin = errors.New("unknown user or wrong password")

// Users manages the users table of a group's store. Passwords are kept as
// slow hashes (rbac.Hash: PBKDF2-HMAC-SHA256, the management plane's
// scheme) and checked in about the same time whether the user exists.
type Users struct {
	store kps.Store
	now   func() time.Time
}

// NewUsers defines the table in store if needed.
func NewUsers(ctx context.Context, store kps.Store) (*Users, error) {
	if err := store.Define(ctx, UsersTableDef()); err != nil {
		return nil, fmt.Errorf("defining the users table: %w", err)
	}
	return &Users{store: store, now: time.Now}, nil
}

// checkUsername: 1 to 128 printable characters, no spaces around, no ':'.
func checkUsername(name string) error {
	if name == "" || len(name) > 128 || strings.TrimSpace(name) != name {
		return fmt.Errorf("%w: a user name is 1 to 128 characters, without spaces around", kps.ErrInvalid)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || r == ':' {
			return fmt.Errorf("%w: user name %q contains %q", kps.ErrInvalid, name, r)
		}
	}
	return nil
}

// Create adds a user; the password must follow rbac.CheckPassword's rules.
func (u *Users) Create(ctx context.Context, username, name string, pw secret.Value) (User, error) {
	if err := checkUsername(username); err != nil {
		return User{}, err
	}
	if err := rbac.CheckPassword(pw); err != nil {
		return User{}, fmt.Errorf("%w: %v", kps.ErrInvalid, err)
	}
	h, err := rbac.Hash(pw)
	if err != nil {
		// mutate:equivalent * unreachable: rbac.Hash does not fail (its own mark says why: pbkdf2.Key with its fixed key and salt lengths)
		return User{}, err
	}
	r, err := u.store.Insert(ctx, UsersTable, map[string]any{
		"username": username, "name": name, "passwordHash": h, "enabled": true,
		"createdAt": u.now().UnixMilli(),
	})
	if err != nil {
		return User{}, err
	}
	return userOf(r), nil
}

// SetPassword replaces a user's password.
func (u *Users) SetPassword(ctx context.Context, username string, pw secret.Value) error {
	if err := rbac.CheckPassword(pw); err != nil {
		return fmt.Errorf("%w: %v", kps.ErrInvalid, err)
	}
	h, err := rbac.Hash(pw)
	if err != nil {
		// mutate:equivalent * unreachable: rbac.Hash does not fail (its own mark says why: pbkdf2.Key with its fixed key and salt lengths)
		return err
	}
	return u.update(ctx, username, func(v map[string]any) { v["passwordHash"] = h })
}

// SetEnabled enables or disables a user (a disabled user cannot log in).
func (u *Users) SetEnabled(ctx context.Context, username string, enabled bool) error {
	return u.update(ctx, username, func(v map[string]any) { v["enabled"] = enabled })
}

func (u *Users) update(ctx context.Context, username string, f func(map[string]any)) error {
	r, err := u.store.GetBySecondary(ctx, UsersTable, username)
	if err != nil {
		return err
	}
	v := make(map[string]any, len(r.Values))
	for k, x := range r.Values {
		v[k] = x
	}
	f(v)
	_, err = u.store.Update(ctx, UsersTable, kps.Row{Values: v, Version: r.Version})
	return err
}

// Delete removes a user.
func (u *Users) Delete(ctx context.Context, username string) error {
	r, err := u.store.GetBySecondary(ctx, UsersTable, username)
	if err != nil {
		return err
	}
	return u.store.Delete(ctx, UsersTable, r.Values["id"], r.Version)
}

// Get returns a user.
func (u *Users) Get(ctx context.Context, username string) (User, error) {
	r, err := u.store.GetBySecondary(ctx, UsersTable, username)
	if err != nil {
		return User{}, err
	}
	return userOf(r), nil
}

// List returns a page of the users (in the order of their ids) and the
// cursor of the next page ("" on the last).
func (u *Users) List(ctx context.Context, page kps.Page) ([]User, string, error) {
	res, err := u.store.List(ctx, UsersTable, page)
	if err != nil {
		return nil, "", err
	}
	out := make([]User, 0, len(res.Rows))
	for _, r := range res.Rows {
		out = append(out, userOf(r))
	}
	return out, res.Next, nil
}

// dummy is checked for unknown users, so that the time taken does not tell
// whether a user exists.
var dummy = func() string {
	h, _ := rbac.Hash(secret.FromString("not anybody's password"))
	return h
}()

// Authenticate checks a user's password: ErrBadLogin for an unknown user,
// a wrong password or a disabled user; another error when the store
// cannot answer.
func (u *Users) Authenticate(ctx context.Context, username string, pw secret.Value) (User, error) {
	r, err := u.store.GetBySecondary(ctx, UsersTable, username)
	hash := dummy
	switch {
	case errors.Is(err, kps.ErrNotFound), errors.Is(err, kps.ErrInvalid):
		r = kps.Row{}
	case err != nil:
		return User{}, err
	default:
		hash, _ = r.Values["passwordHash"].(string)
	}
	ok, herr := rbac.CheckHash(hash, pw)
	if r.Values == nil || herr != nil || !ok {
		return User{}, ErrBadLogin
	}
	user := userOf(r)
	if !user.Enabled {
		return User{}, ErrBadLogin
	}
	return user, nil
}

func userOf(r kps.Row) User {
	s := func(k string) string { v, _ := r.Values[k].(string); return v }
	en, _ := r.Values["enabled"].(bool)
	ms, _ := r.Values["createdAt"].(int64)
	return User{ID: s("id"), Username: s("username"), Name: s("name"), Enabled: en, CreatedAt: time.UnixMilli(ms).UTC()}
}
