// Package rbac holds the management-plane users, roles and (later) sessions.
// For now it keeps the users file, conf/adminUsers.json:
//
//	{"users": [{"name": "admin", "roles": ["API Server Administrator"],
//	            "hash": "pbkdf2-sha256$600000$<salt>$<key>"}]}
//
// Passwords are stored only as PBKDF2-HMAC-SHA256 hashes (600000 iterations,
// a 16-byte random salt, a 32-byte key; salt and key in unpadded standard
// base64). The file is written atomically with mode 0600 and guarded against
// two writers by var/run/adminUsers.lock. Passwords travel as secret.Value
// and are never logged or printed.
package rbac

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// RoleAdmin is the role of the administrator made at domain creation.
const RoleAdmin = "API Server Administrator"

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 8

// Iterations is the PBKDF2 iteration count used for new hashes.
const Iterations = 600000

const (
	hashScheme = "pbkdf2-sha256"
	saltLen    = 16
	keyLen     = 32
)

// lockTimeout bounds the wait for another writer of adminUsers.json or
// revokedSessions.json.
const lockTimeout = 10 * time.Second

// iterations is what new hashes use; tests lower it for speed. The count is
// recorded in every hash, so Verify never depends on it.
var iterations = Iterations

// Errors.
var (
	ErrUserExists   = errors.New("user already exists")
	ErrWeakPassword = errors.New("password too short")
)

// User is one management-plane user.
type User struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	Hash  string   `json:"hash"`
	// Gen is the user record's generation: every change of the password
	// or the roles, and every creation, gives it a number never given
	// before in this file (File.LastGen). A session carries the
	// generation it was made with and ends when the record's is another
	// (changed, or deleted and made again).
	Gen int64 `json:"gen,omitempty"`
}

// File is the content of conf/adminUsers.json.
type File struct {
	Users []User `json:"users"`
	// LastGen is the last generation given to a user record.
	LastGen int64 `json:"lastGen,omitempty"`
}

// Lookup returns the record of user name; ok is false for an unknown
// user.
func (f *File) Lookup(name string) (User, bool) {
	for _, u := range f.Users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// advanceGens gives a new generation to every record of f that is new or
// whose password or roles differ from before.
func advanceGens(before, f *File) {
	for i := range f.Users {
		u := &f.Users[i]
		old, ok := before.Lookup(u.Name)
		if ok && old.Hash == u.Hash && slices.Equal(old.Roles, u.Roles) && old.Gen == u.Gen {
			continue
		}
		f.LastGen++
		u.Gen = f.LastGen
	}
}

// CreateAdmin adds an administrator (role "API Server Administrator") with
// password pw to the users file of h, creating the file when missing. It
// fails with ErrUserExists when name is taken.
func CreateAdmin(h home.Home, name string, pw secret.Value) error {
	return update(h, func(f *File) error {
		for _, u := range f.Users {
			if u.Name == name {
				return fmt.Errorf("admin user %q: %w", name, ErrUserExists)
			}
		}
		return addUser(f, name, pw)
	})
}

// InitAdmins writes a users file holding only the administrator name,
// replacing any file there. managedomain -i uses it: before a domain exists
// a users file can only be the leftover of an interrupted initialisation.
func InitAdmins(h home.Home, name string, pw secret.Value) error {
	return update(h, func(f *File) error {
		f.Users = nil
		return addUser(f, name, pw)
	})
}

func addUser(f *File, name string, pw secret.Value) error {
	if err := ValidateUserName(name); err != nil {
		return err
	}
	if err := CheckPassword(pw); err != nil {
		return err
	}
	hash, err := Hash(pw)
	if err != nil {
		// mutate:equivalent * unreachable: Hash cannot fail (see the mark in Hash)
		return err
	}
	f.Users = append(f.Users, User{Name: name, Roles: []string{RoleAdmin}, Hash: hash})
	return nil
}

// ValidateUserName checks a user name: 1 to 64 printable characters, no
// spaces at either end, no colon (HTTP Basic uses it).
func ValidateUserName(name string) error {
	switch {
	case name == "":
		return errors.New("user name is empty")
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > 64:
		return fmt.Errorf("user name %q: want 1 to 64 characters of UTF-8", name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("user name %q has leading or trailing space", name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || r == ':' {
			return fmt.Errorf("user name %q contains %q (no control characters or colons)", name, r)
		}
	}
	return nil
}

// CheckPassword enforces the password rules (at least MinPasswordLength
// characters). The error never contains the password.
func CheckPassword(pw secret.Value) error {
	if utf8.RuneCount(pw.Reveal()) < MinPasswordLength {
		return fmt.Errorf("%w: a password needs at least %d characters", ErrWeakPassword, MinPasswordLength)
	}
	return nil
}

// Hash returns the PBKDF2-HMAC-SHA256 hash of pw in the stored format
// "pbkdf2-sha256$<iterations>$<salt>$<key>".
func Hash(pw secret.Value) (string, error) {
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails (crypto/rand)
	key, err := pbkdf2.Key(sha256.New, pw.RevealString(), salt, iterations, keyLen)
	if err != nil {
		// mutate:equivalent * unreachable: pbkdf2.Key fails only for a key length outside 1..2^32-1 blocks or, in FIPS 140-only mode, a key under 14 or a salt under 16 bytes; keyLen 32 and saltLen 16 are within all of them
		return "", fmt.Errorf("hashing password: %w", err)
	}
	enc := base64.RawStdEncoding
	return hashScheme + "$" + strconv.Itoa(iterations) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(key), nil
}

// CheckHash reports whether pw matches hash, comparing in constant time.
func CheckHash(hash string, pw secret.Value) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return false, fmt.Errorf("password hash: want %s$<iterations>$<salt>$<key>", hashScheme)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 100_000_000 {
		return false, fmt.Errorf("password hash: bad iteration count %q", parts[1])
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[2])
	if err != nil || len(salt) == 0 {
		return false, errors.New("password hash: bad salt")
	}
	want, err := enc.DecodeString(parts[3])
	if err != nil || len(want) == 0 {
		return false, errors.New("password hash: bad key")
	}
	got, err := pbkdf2.Key(sha256.New, pw.RevealString(), salt, iter, len(want))
	if err != nil {
		return false, fmt.Errorf("hashing password: %w", err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is checked for unknown users so that the time taken does not
// tell whether a user exists.
func dummyHash() string {
	enc := base64.RawStdEncoding
	return hashScheme + "$" + strconv.Itoa(iterations) + "$" + enc.EncodeToString(make([]byte, saltLen)) + "$" + enc.EncodeToString(make([]byte, keyLen))
}

// Verify reports whether name exists in the users file of h and pw is its
// password. An unknown user is (false, nil), found in about the time a known
// one takes.
func Verify(h home.Home, name string, pw secret.Value) (bool, error) {
	f, err := Load(h)
	if err != nil {
		return false, err
	}
	for _, u := range f.Users {
		if subtle.ConstantTimeCompare([]byte(u.Name), []byte(name)) == 1 {
			return CheckHash(u.Hash, pw)
		}
	}
	CheckHash(dummyHash(), pw)
	return false, nil
}

// Load reads the users file of h. A missing file is an empty list.
func Load(h home.Home) (*File, error) {
	data, err := os.ReadFile(h.AdminUsersFile())
	if errors.Is(err, os.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading admin users: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", h.AdminUsersFile(), err)
	}
	return &f, nil
}

func update(h home.Home, fn func(f *File) error) error {
	if err := os.MkdirAll(h.RunDir(), 0o755); err != nil {
		return fmt.Errorf("creating run directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	l, err := home.LockWait(ctx, filepath.Join(h.RunDir(), "adminUsers.lock"))
	if err != nil {
		return fmt.Errorf("another tool is changing the admin users: %w", err)
	}
	defer l.Unlock()
	f, err := Load(h)
	if err != nil {
		return err
	}
	before := &File{Users: make([]User, len(f.Users)), LastGen: f.LastGen}
	for i, u := range f.Users {
		before.Users[i] = u
		before.Users[i].Roles = slices.Clone(u.Roles)
	}
	if err := fn(f); err != nil {
		return err
	}
	advanceGens(before, f)
	data, _ := json.MarshalIndent(f, "", "  ") // strings only: cannot fail
	if err := os.MkdirAll(h.ConfDir(), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", h.ConfDir(), err)
	}
	return home.WriteFileAtomic(h.AdminUsersFile(), append(data, '\n'), 0o600)
}

// Errors of the user changes.
var (
	ErrUserNotFound = errors.New("no such user")
	ErrLastAdmin    = errors.New("the last administrator cannot be removed")
)

// Roles returns the roles of user name; ok is false for an unknown user.
func Roles(h home.Home, name string) (roles []string, ok bool, err error) {
	f, err := Load(h)
	if err != nil {
		return nil, false, err
	}
	for _, u := range f.Users {
		if u.Name == name {
			return u.Roles, true, nil
		}
	}
	return nil, false, nil
}

// AddUser adds user name with password pw and roles (at least one). It
// fails with ErrUserExists when name is taken.
func AddUser(h home.Home, name string, pw secret.Value, roles []string) error {
	if len(roles) == 0 {
		return fmt.Errorf("user %q: give at least one role", name)
	}
	return update(h, func(f *File) error {
		for _, u := range f.Users {
			if u.Name == name {
				return fmt.Errorf("user %q: %w", name, ErrUserExists)
			}
		}
		if err := addUser(f, name, pw); err != nil {
			return err
		}
		f.Users[len(f.Users)-1].Roles = slices.Clone(roles)
		return nil
	})
}

// UpdateUser changes the password of name (when pw is not zero) and its
// roles (when roles is not nil). Taking the administrators' role from the
// last administrator fails with ErrLastAdmin.
func UpdateUser(h home.Home, name string, pw secret.Value, roles []string) error {
	if roles != nil && len(roles) == 0 {
		return fmt.Errorf("user %q: give at least one role", name)
	}
	if !pw.IsZero() {
		if err := CheckPassword(pw); err != nil {
			return err
		}
	}
	return update(h, func(f *File) error {
		i := slices.IndexFunc(f.Users, func(u User) bool { return u.Name == name })
		if i < 0 {
			return fmt.Errorf("user %q: %w", name, ErrUserNotFound)
		}
		if roles != nil {
			if slices.Contains(f.Users[i].Roles, RoleAdmin) && !slices.Contains(roles, RoleAdmin) && countAdmins(f) == 1 {
				return fmt.Errorf("taking the role %q from %q: %w", RoleAdmin, name, ErrLastAdmin)
			}
			f.Users[i].Roles = slices.Clone(roles)
		}
		if !pw.IsZero() {
			hash, err := Hash(pw)
			if err != nil {
				// mutate:equivalent * unreachable: Hash cannot fail (see the mark in Hash)
				return err
			}
			f.Users[i].Hash = hash
		}
		return nil
	})
}

// DeleteUser removes name; the last administrator cannot be removed
// (ErrLastAdmin).
func DeleteUser(h home.Home, name string) error {
	return update(h, func(f *File) error {
		i := slices.IndexFunc(f.Users, func(u User) bool { return u.Name == name })
		if i < 0 {
			return fmt.Errorf("user %q: %w", name, ErrUserNotFound)
		}
		if slices.Contains(f.Users[i].Roles, RoleAdmin) && countAdmins(f) == 1 {
			return fmt.Errorf("deleting %q: %w", name, ErrLastAdmin)
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		return nil
	})
}

func countAdmins(f *File) int {
	n := 0
	for _, u := range f.Users {
		if slices.Contains(u.Roles, RoleAdmin) {
			n++
		}
	}
	return n
}
