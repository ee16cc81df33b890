package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// gatehouse client backup: POST /api/backup, the archive written as it
// arrives, then checked (docs/backup.md).

func init() {
	clientOptions["with-logs"] = optBool
	clientOptions["this-host"] = optBool
	clientOptions["skip-unreachable"] = optBool
	clientVerbs = append(clientVerbs, clientVerb{name: "backup", opts: []string{"output", "with-logs", "this-host", "skip-unreachable"}, required: []string{"output"},
		api:     "POST /api/backup",
		summary: "a backup of the domain (of the Admin Node Manager's host in a domain of one host) through the API, written atomically and verified",
		help: "-o, --output FILE              where to write it (atomically, mode 0600, then its checksums\n" +
			"                               verified); - for standard output (not verified)\n" +
			"--with-logs                    add the logs\n" +
			"--this-host                    the Admin Node Manager's host only, not the whole domain\n" +
			"--skip-unreachable             a host that cannot be reached is left out, the gap recorded\n" +
			"Needs backup.create (the Operator role); with secrets no passphrase seals, the\n" +
			"administrator's role. Restore it with gatehouse restore FILE.",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.backup(ctx) }})
}

func (c *apiClient) backup(ctx context.Context) error {
	q := url.Values{}
	for name, on := range map[string]bool{"withLogs": c.o.withLogs, "thisHost": c.o.thisHost, "skipUnreachable": c.o.skipUnreachable} {
		if on {
			q.Set(name, "true")
		}
	}
	path := "/backup"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req := apiRequest{Method: http.MethodPost, Path: path, Accept: "application/gzip, application/x-tar, application/json", Long: true}
	if c.o.output == "-" {
		req.Into = c.env.Stdout
		if _, _, err := c.sendRaw(ctx, req); err != nil {
			return err
		}
		fmt.Fprintln(c.env.Stderr, "Backup written to standard output (not verified: read it back with gatehouse backup verify -).")
		return nil
	}
	out, err := filepath.Abs(c.o.output)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial-*")
	if err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone once renamed
	defer f.Close()
	req.Into = f
	if _, _, err := c.sendRaw(ctx, req); err != nil {
		return fmt.Errorf("%w; nothing was written to %s", err, out)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	var m *backup.Manifest
	var dm *backup.DomainManifest
	if backup.IsDomain(head[:n]) {
		dm, err = backup.VerifyDomain(ctx, f)
	} else {
		m, err = backup.Verify(ctx, f)
	}
	if err != nil {
		return fmt.Errorf("the backup received does not verify: %w; nothing was written to %s", err, out)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	home.SyncDir(filepath.Dir(out))
	var size int64
	if st, err := os.Stat(out); err == nil {
		size = st.Size()
	}
	if dm != nil {
		var hosts []string
		for _, p := range dm.Hosts {
			hosts = append(hosts, p.HostID)
		}
		if c.o.json {
			b, _ := json.Marshal(map[string]any{"file": out, "size": size, "hosts": hosts, "gaps": dm.Gaps, "created": dm.Created, "topologyVersion": dm.TopologyVersion})
			return c.printJSON(b)
		}
		fmt.Fprintf(c.env.Stdout, "Wrote the domain's backup (hosts %s) to %s: %d bytes, every part's checksums right (restore a host's part with gatehouse restore FILE --host ID).\n", strings.Join(hosts, ", "), out, size)
		for _, g := range dm.Gaps {
			fmt.Fprintf(c.env.Stderr, "client: WARNING: host %s is NOT in this backup: %s\n", g.HostID, g.Error)
		}
		return nil
	}
	if c.o.json {
		b, _ := json.Marshal(map[string]any{"file": out, "size": size, "entries": len(m.Entries), "host": m.Host, "created": m.Created, "topologyVersion": m.TopologyVersion})
		return c.printJSON(b)
	}
	fmt.Fprintf(c.env.Stdout, "Wrote the backup of host %s to %s: %d bytes, %d entries, every checksum right (restore it with gatehouse restore).\n", m.Host, out, size, len(m.Entries))
	return nil
}
