package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// ReplaceFiles replaces several files all or none, also when the process
// is killed half-way: changing a passphrase re-encrypts every secret of a
// scope, and a mix of old and new files would open with neither
// passphrase. The protocol, with journal the path of a journal file:
//
//  1. the journal says "preparing" and lists the paths (written atomically);
//  2. each new content goes to PATH.replace beside its file (fsync);
//  3. the journal says "prepared": from here on the change is decided;
//  4. each PATH.replace is renamed over PATH (the directories fsynced);
//  5. the journal is removed.
//
// RecoverReplace, run before anything reads those files (at a process's
// start), finishes a prepared change (step 4 again: the renames that
// happened are no-ops, the others happen) or undoes one that was not
// prepared (removes the PATH.replace files): afterwards every file is old,
// or every file is new. A file may be new (absent before): deleting files
// is not supported. Paths are absolute; modes are given per file.
func ReplaceFiles(journal string, files []NewFile) error {
	return replaceFiles(journal, files, func(string) {})
}

// NewFile is one file of a ReplaceFiles change.
type NewFile struct {
	Path string
	Data []byte
	Perm os.FileMode
}

// ReplaceSuffix is what the new content of PATH is written to first.
const ReplaceSuffix = ".replace"

type replaceJournal struct {
	State string   `json:"state"` // preparing | prepared
	Paths []string `json:"paths"`
}

// replaceFiles is ReplaceFiles with a hook called after each step that
// touches the disk (the crash tests kill the process there).
func replaceFiles(journal string, files []NewFile, step func(string)) error {
	if len(files) == 0 {
		return nil
	}
	paths := make([]string, len(files))
	seen := map[string]bool{}
	for i, f := range files {
		if !filepath.IsAbs(f.Path) {
			return fmt.Errorf("replacing files: %s is not an absolute path", f.Path)
		}
		if seen[f.Path] {
			return fmt.Errorf("replacing files: %s is given twice", f.Path)
		}
		seen[f.Path] = true
		paths[i] = f.Path
	}
	if _, err := os.Stat(journal); err == nil {
		return fmt.Errorf("replacing files: the journal %s of an earlier change is there; run its recovery first", journal)
	}
	if err := writeJournal(journal, replaceJournal{State: "preparing", Paths: paths}); err != nil {
		return err
	}
	step("journal preparing")
	for _, f := range files {
		if err := WriteFileAtomic(f.Path+ReplaceSuffix, f.Data, f.Perm); err != nil {
			// Undo what was written; the journal goes last.
			if uerr := undo(journal, paths); uerr != nil {
				return errors.Join(err, uerr)
			}
			return err
		}
		step("wrote " + f.Path + ReplaceSuffix)
	}
	if err := writeJournal(journal, replaceJournal{State: "prepared", Paths: paths}); err != nil {
		if uerr := undo(journal, paths); uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	step("journal prepared")
	return finish(journal, paths, step)
}

// RecoverReplace finishes or undoes the change a journal describes (see
// ReplaceFiles); it reports whether there was one and what it did. No
// journal: nothing to do.
func RecoverReplace(journal string) (string, error) {
	b, err := os.ReadFile(journal)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the journal %s: %w", journal, err)
	}
	var j replaceJournal
	if err := json.Unmarshal(b, &j); err != nil || (j.State != "preparing" && j.State != "prepared") {
		return "", fmt.Errorf("the journal %s is damaged (%q); its files were left as they are: compare each with its %s copy", journal, b, ReplaceSuffix)
	}
	if j.State == "preparing" {
		if err := undo(journal, j.Paths); err != nil {
			return "", err
		}
		return fmt.Sprintf("an unfinished change of %d file(s) was undone", len(j.Paths)), nil
	}
	if err := finish(journal, j.Paths, func(string) {}); err != nil {
		return "", err
	}
	return fmt.Sprintf("an interrupted change of %d file(s) was finished", len(j.Paths)), nil
}

// finish renames each PATH.replace over PATH (one already renamed has no
// PATH.replace left), fsyncs the directories, then removes the journal.
func finish(journal string, paths []string, step func(string)) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		err := os.Rename(p+ReplaceSuffix, p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replacing %s: %w", p, err)
		}
		removeTemps(p + ReplaceSuffix)
		dirs[filepath.Dir(p)] = true
		step("renamed " + p)
	}
	if err := syncDirs(dirs); err != nil {
		return err
	}
	if err := os.Remove(journal); err != nil {
		return fmt.Errorf("removing the journal %s: %w", journal, err)
	}
	removeTemps(journal)
	step("journal removed")
	return SyncDir(filepath.Dir(journal))
}

// undo removes the PATH.replace files (and the temporary files of a
// write of one that was cut short), then the journal.
func undo(journal string, paths []string) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		// ENOTDIR: its directory is not one, so the file cannot be there
		// either (a write that failed for that reason).
		if err := os.Remove(p + ReplaceSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("undoing the change of %s: %w", p, err)
		}
		removeTemps(p + ReplaceSuffix)
		dirs[filepath.Dir(p)] = true
	}
	removeTemps(journal)
	if err := syncDirs(dirs); err != nil {
		return err
	}
	if err := os.Remove(journal); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the journal %s: %w", journal, err)
	}
	return SyncDir(filepath.Dir(journal))
}

// removeTemps removes what WriteFileAtomic(path) leaves when the process
// is killed before its rename: .BASE.tmp-* beside path.
func removeTemps(path string) {
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	for _, t := range tmps {
		os.Remove(t)
	}
}

func syncDirs(dirs map[string]bool) error {
	list := make([]string, 0, len(dirs))
	for d := range dirs {
		list = append(list, d)
	}
	sort.Strings(list)
	for _, d := range list {
		if err := SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func writeJournal(path string, j replaceJournal) error {
	b, err := json.Marshal(j)
	if err != nil {
		// mutate:equivalent * a struct of strings always marshals
		return err
	}
	return WriteFileAtomic(path, b, 0o600)
}
