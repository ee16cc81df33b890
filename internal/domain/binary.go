package domain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// The binary of a host, replaced by an upgrade (gatehouse upgrade,
// docs/backup.md#upgrades): posix/bin/gatehouse is replaced atomically,
// the one it replaces kept as posix/bin/gatehouse.previous, which
// RestorePreviousBinary puts back. Running processes keep the code they
// started with; the instances restarted afterwards run the new one.

// MaxBinaryBytes bounds a binary sent to a host.
const MaxBinaryBytes = 512 << 20

// PreviousBinary is the name of the binary an upgrade replaced.
const PreviousBinary = "gatehouse.previous"

// BinaryInfo describes an installed binary.
type BinaryInfo struct {
	SHA256   string `json:"sha256"`
	Version  string `json:"version"`  // what "gatehouse version" printed (first line)
	Previous string `json:"previous"` // SHA-256 of the binary it replaced ("" when none)
}

// FileSHA256 is the SHA-256 of the file at path, in hex.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BinaryVersion runs exe version and returns its first line; a binary
// that does not run (another architecture, a damaged file) is an error.
func BinaryVersion(ctx context.Context, exe string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s does not run as a gatehouse binary (%s version: %v)", exe, filepath.Base(exe), err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.Contains(strings.ToLower(line), "gatehouse") {
		return "", fmt.Errorf("%s is not a gatehouse binary: %s version printed %q", exe, filepath.Base(exe), line)
	}
	return line, nil
}

// ReplaceBinary installs the binary read from r (at most MaxBinaryBytes,
// with SHA-256 wantSHA) as posix/bin/gatehouse of h, after checking that
// it runs; the binary it replaces is kept as posix/bin/gatehouse.previous.
// On any failure nothing is changed.
func ReplaceBinary(ctx context.Context, h home.Home, r io.Reader, wantSHA string) (BinaryInfo, error) {
	var info BinaryInfo
	bin := h.BinDir()
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return info, err
	}
	f, err := os.CreateTemp(bin, ".gatehouse.new-*")
	if err != nil {
		return info, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone once renamed
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), io.LimitReader(r, MaxBinaryBytes+1))
	if err == nil && n > MaxBinaryBytes {
		err = fmt.Errorf("the binary is larger than %d bytes", MaxBinaryBytes)
	}
	if err == nil {
		err = f.Chmod(0o755)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return info, fmt.Errorf("receiving the binary: %w", err)
	}
	info.SHA256 = hex.EncodeToString(sum.Sum(nil))
	if !strings.EqualFold(info.SHA256, wantSHA) {
		return info, fmt.Errorf("the binary received has SHA-256 %s, not %s: damaged on the way; nothing was changed", info.SHA256, wantSHA)
	}
	if info.Version, err = BinaryVersion(ctx, tmp); err != nil {
		return info, err
	}
	cur := filepath.Join(bin, "gatehouse")
	if prev, err := FileSHA256(cur); err == nil {
		info.Previous = prev
		if prev != info.SHA256 {
			if err := keepAs(cur, filepath.Join(bin, PreviousBinary)); err != nil {
				return info, fmt.Errorf("keeping the current binary: %w", err)
			}
		}
	}
	if err := os.Rename(tmp, cur); err != nil {
		return info, err
	}
	home.SyncDir(bin)
	return info, nil
}

// keepAs makes dst a copy of src atomically (a hard link when it can).
func keepAs(src, dst string) error {
	tmp := dst + ".tmp"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		data, rerr := os.ReadFile(src)
		if rerr != nil {
			return rerr
		}
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dst)
}

// ErrNoPreviousBinary is returned by RestorePreviousBinary when no upgrade
// left a previous binary.
var ErrNoPreviousBinary = errors.New("there is no previous binary (posix/bin/gatehouse.previous): no upgrade replaced this one")

// RestorePreviousBinary puts posix/bin/gatehouse.previous back as
// posix/bin/gatehouse (the binary it replaces becomes the previous one, so
// that doing it twice undoes it).
func RestorePreviousBinary(ctx context.Context, h home.Home) (BinaryInfo, error) {
	bin := h.BinDir()
	prev, cur := filepath.Join(bin, PreviousBinary), filepath.Join(bin, "gatehouse")
	if _, err := os.Stat(prev); errors.Is(err, os.ErrNotExist) {
		return BinaryInfo{}, ErrNoPreviousBinary
	}
	var info BinaryInfo
	var err error
	if info.SHA256, err = FileSHA256(prev); err != nil {
		return info, err
	}
	if info.Version, err = BinaryVersion(ctx, prev); err != nil {
		return info, err
	}
	info.Previous, _ = FileSHA256(cur)
	swap := filepath.Join(bin, ".gatehouse.swap")
	if err := keepAs(prev, swap); err != nil {
		return info, err
	}
	if info.Previous != "" {
		if err := keepAs(cur, prev); err != nil {
			os.Remove(swap)
			return info, err
		}
	}
	if err := os.Rename(swap, cur); err != nil {
		return info, err
	}
	home.SyncDir(bin)
	return info, nil
}
