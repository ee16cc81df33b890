package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// installed is archive.json in an installed archive: the archive's Meta and
// the sha256 of each file, which groupconf.LoadInstance checks.
type installed struct {
	Meta
	SHA256 map[string]string `json:"sha256"`
}

// hostLock guards the installed archives of a group and its instances'
// deployment.json on this host, so that Prune never removes an archive that
// SetCurrent is pointing an instance at.
func hostLock(h home.Home, groupID string) (*home.Lock, error) {
	if err := os.MkdirAll(h.RunDir(), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", h.RunDir(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	return home.LockWait(ctx, filepath.Join(h.RunDir(), "archives-"+groupID+".lock"))
}

// Install extracts archive a, described by m, into
// groups/<group>/conf/archives/<id>/ with archive.json. It is idempotent: an
// archive already installed with the same checksum is left as it is (after
// checking its files); one installed with another checksum is an error. The
// files are written and synced in a temporary directory that is renamed into
// place, so an archive directory is always whole.
func Install(h home.Home, m Meta, a Archive) error {
	if err := checkGroupID(m.Group); err != nil {
		return err
	}
	if m.ID < 1 {
		return fmt.Errorf("%w: archive id %d", ErrInvalid, m.ID)
	}
	sum := sha256.Sum256(a.Canonical)
	if got := hex.EncodeToString(sum[:]); got != a.Checksum || got != m.Checksum {
		return fmt.Errorf("%w: archive %d of group %s: the archive's sha256 is %s, its metadata says %s", ErrCorrupt, m.ID, m.Group, got, m.Checksum)
	}
	if !slices.Equal(a.Names(), m.Files) {
		return fmt.Errorf("%w: archive %d of group %s holds %q, its metadata says %q", ErrCorrupt, m.ID, m.Group, a.Names(), m.Files)
	}
	l, err := hostLock(h, m.Group)
	if err != nil {
		return fmt.Errorf("installing archive %d of group %s: %w", m.ID, m.Group, err)
	}
	defer l.Unlock()

	dir := h.GroupArchiveDir(m.Group, m.ID)
	if _, err := os.Lstat(dir); err == nil {
		have, err := readInstalled(h, m.Group, m.ID)
		if err != nil {
			return err
		}
		if have.Checksum != m.Checksum {
			return fmt.Errorf("archive %d of group %s is already installed with checksum %s, not %s", m.ID, m.Group, have.Checksum, m.Checksum)
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("installing archive %d of group %s: %w", m.ID, m.Group, err)
	}

	parent := h.GroupArchivesDir(m.Group)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".install-"+strconv.Itoa(m.ID)+"-")
	if err != nil {
		return fmt.Errorf("installing archive %d of group %s: %w", m.ID, m.Group, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("installing archive %d of group %s: %w", m.ID, m.Group, err)
	}
	inst := installed{Meta: m, SHA256: map[string]string{}}
	for _, f := range a.Files {
		s := sha256.Sum256(f.Data)
		inst.SHA256[f.Name] = hex.EncodeToString(s[:])
		if err := writeSynced(filepath.Join(tmp, f.Name), f.Data); err != nil {
			return fmt.Errorf("installing archive %d of group %s: %w", m.ID, m.Group, err)
		}
	}
	ij, err := json.MarshalIndent(inst, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding archive.json: %w", err)
	}
	if err := writeSynced(filepath.Join(tmp, "archive.json"), append(ij, '\n')); err != nil {
		return fmt.Errorf("installing archive %d of group %s: %w", m.ID, m.Group, err)
	}
	if err := home.SyncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("installing archive %d of group %s: %w", m.ID, m.Group, err)
	}
	renamed = true
	return home.SyncDir(parent)
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readInstalled reads an installed archive's archive.json and checks every
// file against it: an archive that does not verify is an error wrapping
// ErrCorrupt.
func readInstalled(h home.Home, groupID string, id int) (installed, error) {
	dir := h.GroupArchiveDir(groupID, id)
	mp := filepath.Join(dir, "archive.json")
	data, err := os.ReadFile(mp)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
			return installed{}, fmt.Errorf("%w: archive %d of group %s is not installed on this host", ErrNotFound, id, groupID)
		}
		return installed{}, fmt.Errorf("%w: %s is missing", ErrCorrupt, mp)
	}
	if err != nil {
		return installed{}, fmt.Errorf("reading %s: %w", mp, err)
	}
	var in installed
	if err := json.Unmarshal(data, &in); err != nil {
		return installed{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, mp, err)
	}
	if in.Group != groupID || in.ID != id {
		return installed{}, fmt.Errorf("%w: %s describes archive %d of group %q", ErrCorrupt, mp, in.ID, in.Group)
	}
	if len(in.Files) == 0 || in.Files[0] != GroupFile {
		return installed{}, fmt.Errorf("%w: %s lists files %q, want %s first", ErrCorrupt, mp, in.Files, GroupFile)
	}
	for _, name := range in.Files {
		if !groupconf.ArchiveFileName(name) {
			return installed{}, fmt.Errorf("%w: %s lists %q", ErrCorrupt, mp, name)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return installed{}, fmt.Errorf("%w: archive %d of group %s: %v", ErrCorrupt, id, groupID, err)
		}
		s := sha256.Sum256(b)
		if in.SHA256[name] != hex.EncodeToString(s[:]) {
			return installed{}, fmt.Errorf("%w: %s does not match its sha256 in %s", ErrCorrupt, filepath.Join(dir, name), mp)
		}
	}
	return in, nil
}

// SetCurrent points the instance at installed archive m: it writes the
// instance's conf/deployment.json atomically (deployedAt now, deployedBy and
// comment from m.By and m.Comment; a caller rolling back may set those to the
// rollback's). The archive must be installed and verify, and the instance's
// directory must exist. The instance reads the pointer when it next loads its
// configuration (groupconf.LoadInstance).
func SetCurrent(h home.Home, groupID, instanceID string, m Meta) error {
	if err := checkGroupID(groupID); err != nil {
		return err
	}
	if err := checkGroupID(instanceID); err != nil {
		return fmt.Errorf("instance: %w", err)
	}
	if m.Group != groupID {
		return fmt.Errorf("%w: archive %d is of group %q, not %s", ErrInvalid, m.ID, m.Group, groupID)
	}
	if st, err := os.Stat(h.InstanceDir(groupID, instanceID)); err != nil || !st.IsDir() {
		return fmt.Errorf("no instance %s of group %s on this host (%s)", instanceID, groupID, h.InstanceDir(groupID, instanceID))
	}
	l, err := hostLock(h, groupID)
	if err != nil {
		return fmt.Errorf("deploying archive %d to %s: %w", m.ID, instanceID, err)
	}
	defer l.Unlock()
	in, err := readInstalled(h, groupID, m.ID)
	if err != nil {
		return err
	}
	if in.Checksum != m.Checksum {
		return fmt.Errorf("archive %d of group %s is installed with checksum %s, not %s", m.ID, groupID, in.Checksum, m.Checksum)
	}
	d := groupconf.Deployed{
		Group:      groupID,
		Archive:    m.ID,
		Checksum:   m.Checksum,
		Files:      in.Files,
		DeployedAt: time.Now().UTC().Truncate(time.Millisecond),
		DeployedBy: m.By,
		Comment:    m.Comment,
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding deployment.json: %w", err)
	}
	path := h.InstanceDeploymentFile(groupID, instanceID)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	return home.WriteFileAtomic(path, append(data, '\n'), 0o644)
}

// Current returns the metadata of the installed archive the instance's
// deployment.json names, nil and no error when it has none (it runs
// group.yaml). A pointer that is corrupt or names an archive that is not
// installed whole is an error.
func Current(h home.Home, groupID, instanceID string) (*Meta, error) {
	if err := checkGroupID(groupID); err != nil {
		return nil, err
	}
	d, err := groupconf.ReadDeployment(h, groupID, instanceID)
	if err != nil || d == nil {
		return nil, err
	}
	in, err := readInstalled(h, groupID, d.Archive)
	if err != nil {
		return nil, fmt.Errorf("%s names archive %d: %w", h.InstanceDeploymentFile(groupID, instanceID), d.Archive, err)
	}
	if in.Checksum != d.Checksum {
		return nil, fmt.Errorf("%w: %s names archive %d with checksum %s, the installed one has %s", ErrCorrupt, h.InstanceDeploymentFile(groupID, instanceID), d.Archive, d.Checksum, in.Checksum)
	}
	m := in.Meta
	return &m, nil
}

// Prune removes the group's installed archives that no instance's
// deployment.json on this host names, except the newest keep ones (by id).
// It returns the ids it removed. A deployment.json that cannot be read stops
// it (it could name any archive). Each archive directory is renamed away
// before it is removed, so a half-removed one never looks installed.
func Prune(h home.Home, groupID string, keep int) ([]int, error) {
	if err := checkGroupID(groupID); err != nil {
		return nil, err
	}
	l, err := hostLock(h, groupID)
	if err != nil {
		return nil, fmt.Errorf("pruning archives of group %s: %w", groupID, err)
	}
	defer l.Unlock()

	inUse := map[int]bool{}
	entries, err := os.ReadDir(h.GroupDir(groupID))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("listing %s: %w", h.GroupDir(groupID), err)
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "conf" {
			continue
		}
		d, err := groupconf.ReadDeployment(h, groupID, e.Name())
		if err != nil {
			return nil, fmt.Errorf("pruning archives of group %s: %w", groupID, err)
		}
		if d != nil {
			inUse[d.Archive] = true
		}
	}

	parent := h.GroupArchivesDir(groupID)
	entries, err = os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", parent, err)
	}
	var ids []int
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".prune-") { // left by an interrupted Prune
			os.RemoveAll(filepath.Join(parent, e.Name()))
			continue
		}
		if id, err := strconv.Atoi(e.Name()); err == nil && id > 0 && strconv.Itoa(id) == e.Name() && e.IsDir() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var removed []int
	for i, id := range ids {
		if inUse[id] || i >= len(ids)-keep {
			continue
		}
		dir := h.GroupArchiveDir(groupID, id)
		gone := filepath.Join(parent, ".prune-"+strconv.Itoa(id))
		if err := os.Rename(dir, gone); err != nil {
			return removed, fmt.Errorf("removing archive %d of group %s: %w", id, groupID, err)
		}
		if err := os.RemoveAll(gone); err != nil {
			return removed, fmt.Errorf("removing archive %d of group %s: %w", id, groupID, err)
		}
		removed = append(removed, id)
	}
	if len(removed) > 0 {
		if err := home.SyncDir(parent); err != nil {
			return removed, err
		}
	}
	return removed, nil
}
