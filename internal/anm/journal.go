package anm

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// The rollout journal: every job of this ANM is a file
// conf/rollouts/<id>.json (beside conf/deployments, the archive store, which
// holds only groups' directories), written atomically (temp file, fsync,
// rename) when the job is registered and again at each change of its
// progress, before the rollout goes on to its next step. After a crash the
// ANM reads them back (LoadJobs): finished jobs stay listed, job ids go on
// after the highest, and a job still "running" was interrupted and is
// resumed (resume.go). The files of jobs forgotten beyond maxJobs are
// removed.

// journal is the directory of job files; a zero journal (no dir) keeps
// nothing on disk (the package's unit tests).
type journal struct {
	dir string
	log *slog.Logger
}

func newJournal(h home.Home, log *slog.Logger) journal {
	return journal{dir: h.Path("conf", "rollouts"), log: log}
}

func (jn journal) file(id int) string { return filepath.Join(jn.dir, strconv.Itoa(id)+".json") }

// save writes j durably.
func (jn journal) save(j *Job) error {
	if jn.dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("journal of job %d: %w", j.ID, err)
	}
	if err := os.MkdirAll(jn.dir, 0o750); err != nil {
		return fmt.Errorf("journal of job %d: %w", j.ID, err)
	}
	if err := home.WriteFileAtomic(jn.file(j.ID), append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("journal of job %d: %w", j.ID, err)
	}
	return nil
}

// remove forgets job id's file (a job pruned beyond maxJobs).
func (jn journal) remove(id int) {
	if jn.dir == "" {
		return
	}
	if err := os.Remove(jn.file(id)); err != nil && !errors.Is(err, os.ErrNotExist) && jn.log != nil {
		jn.log.Warn("removing a job's journal", "job", id, "error", err.Error())
	}
}

var jobFileName = regexp.MustCompile(`^([1-9][0-9]{0,9})\.json$`)

// load reads every job file, oldest id first. A file that does not parse
// is reported and left alone (its id still counts, so ids stay unique).
func (jn journal) load() (jobs []*Job, maxID int, err error) {
	if jn.dir == "" {
		return nil, 0, nil
	}
	ents, err := os.ReadDir(jn.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading the rollout journal: %w", err)
	}
	for _, e := range ents {
		m := jobFileName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		id, _ := strconv.Atoi(m[1]) // at most 10 digits
		maxID = max(maxID, id)
		data, err := os.ReadFile(filepath.Join(jn.dir, e.Name()))
		var j Job
		if err == nil {
			err = json.Unmarshal(data, &j)
		}
		if err == nil && j.ID != id {
			err = fmt.Errorf("it holds job %d", j.ID)
		}
		if err != nil {
			if jn.log != nil {
				jn.log.Error("a job of the rollout journal cannot be read; it is left as it is", "file", filepath.Join(jn.dir, e.Name()), "error", err.Error())
			}
			continue
		}
		jobs = append(jobs, &j)
	}
	slices.SortFunc(jobs, func(a, b *Job) int { return a.ID - b.ID })
	return jobs, maxID, nil
}
