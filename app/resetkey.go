package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
)

// ResetKeyConfig says whose key to replace in which stopped Logbook.
type ResetKeyConfig struct {
	DataDir  string
	Username string // a site admin
	KeyName  string
	// Key is the new key; empty generates one.
	Key          string
	RevokeOthers bool
	Log          *slog.Logger
}

// ResetKeyResult is the new key (shown once) and what changed.
type ResetKeyResult struct {
	Username, KeyID, Key string
	Revoked              int
	Seq                  uint64
}

// ResetAdminKey gives a site admin of a stopped all-in-one a new API key:
// it starts the embedded NATS server on the data directory (a free local
// port), rebuilds the policy state, and proposes key_created (and, with
// RevokeOthers, key_revoked for the other keys) as that admin, decided by
// the policy and appended to the log like any key change.
func ResetAdminKey(ctx context.Context, c ResetKeyConfig) (ResetKeyResult, error) {
	res := ResetKeyResult{Username: c.Username, Key: c.Key}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if res.Key == "" {
		res.Key = ingest.NewAPIKey()
	} else if err := ingest.ValidateAPIKey(res.Key); err != nil {
		return res, fmt.Errorf("LOGBOOK_ADMIN_API_KEY: %w", err)
	}
	natsDir := filepath.Join(c.DataDir, "nats")
	if _, err := os.Stat(filepath.Join(natsDir, "jetstream")); err != nil {
		return res, fmt.Errorf("no Logbook data in %s (set -data.dir): %w", c.DataDir, err)
	}
	if err := checkStopped(c.DataDir); err != nil {
		return res, err
	}
	auth, _, err := embeddedAuth()
	if err != nil {
		return res, err
	}
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: natsDir, Host: "127.0.0.1", Port: -1, Auth: auth})
	if err != nil {
		return res, err
	}
	defer ns.Shutdown()
	b, err := bus.Dial(ctx, bus.ClientURL(ns), "logbook-reset-key", bus.DefaultConfig(), log, nats.UserInfo(auth.User, auth.Password))
	if err != nil {
		return res, err
	}
	defer b.Close()
	d := ingest.NewDecider(b.NC, b.JS, b.Subject, log)
	svc := &ingest.Service{Decider: d, Proposer: ingest.NewProposer(b.NC, b.JS, b.Subject)}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-d.Ready():
	case err := <-done:
		done <- err
		return res, fmt.Errorf("read the log: %w", err)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	var others []string
	var found, admin bool
	d.View(func(s *policy.State) {
		if u := s.Users[c.Username]; u != nil {
			found, admin = true, u.SiteAdmin
			for id := range u.Keys {
				others = append(others, id)
			}
		}
	})
	if !found || !admin {
		return res, fmt.Errorf("%q is not a site admin of this Logbook (use -user)", c.Username)
	}
	sort.Strings(others)
	id := events.NewID(time.Now())
	res.KeyID = strings.ToLower(id[len(id)-10:])
	out, err := svc.Submit(ctx, events.Event{ID: id, Actor: c.Username, Entity: c.Username,
		Payload: events.KeyCreatedV1{Username: c.Username, KeyID: res.KeyID, Name: c.KeyName, Hash: policy.HashKey(res.Key)}}, ingest.Wait)
	if err != nil {
		return res, fmt.Errorf("record the new key: %w", err)
	}
	res.Seq = out.Seq
	if !c.RevokeOthers {
		return res, nil
	}
	for _, k := range others {
		out, err := svc.Submit(ctx, events.Event{Actor: c.Username, Entity: c.Username,
			Payload: events.KeyRevokedV1{Username: c.Username, KeyID: k}}, ingest.Wait)
		if err != nil {
			return res, fmt.Errorf("revoke key %s (the new key is recorded and valid): %w", k, err)
		}
		res.Revoked, res.Seq = res.Revoked+1, out.Seq
	}
	return res, nil
}

// checkStopped refuses to work on the data directory of a running Logbook:
// its read model is locked by the process that has it open.
func checkStopped(dataDir string) error {
	dir := projections.LiveDir(filepath.Join(dataDir, "readmodel"))
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		return nil
	}
	st, err := projections.Open(projections.Options{Dir: dir, ReadOnly: true})
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "lock") {
			return errors.New("logbook seems to be running on " + dataDir + " (its read model is locked): stop it first")
		}
		return nil // not cleanly closed (a crash): nobody holds it
	}
	return st.Close()
}
