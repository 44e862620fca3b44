package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeAndAdminCommands boots the real program on random ports with a
// temp data dir, reads the admin key it prints once, and administers it with
// its own subcommands.
func TestServeAndAdminCommands(t *testing.T) {
	t.Setenv("LOGBOOK_ADMIN_API_KEY", "")
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan error, 1)
	dir := t.TempDir()
	go func() {
		done <- run(ctx, []string{"-data.dir", dir, "-http.addr", "127.0.0.1:0", "-nats.addr", "127.0.0.1:0", "-log.level", "warn"}, &out, &out)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	urlRe := regexp.MustCompile(`Web/API: (http://\S+)`)
	keyRe := regexp.MustCompile(`\n  (lb-[0-9a-f]{48})\n`)
	deadline := time.Now().Add(60 * time.Second)
	for !keyRe.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no URL and admin key printed:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Setenv("LOGBOOK_URL", urlRe.FindStringSubmatch(out.String())[1])
	t.Setenv("LOGBOOK_API_KEY", keyRe.FindStringSubmatch(out.String())[1])

	cmd := func(args ...string) string {
		t.Helper()
		var b bytes.Buffer
		if err := run(ctx, args, &b, &b); err != nil {
			t.Fatalf("logbook %s: %v", strings.Join(args, " "), err)
		}
		return b.String()
	}
	cmd("user", "create", "alice", "-email", "alice@example.com")
	cmd("team", "create", "vision")
	cmd("team", "add", "vision", "alice", "-role", "member")
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(cmd("key", "create", "alice", "-name", "laptop", "-o", "json")), &key); err != nil || !strings.HasPrefix(key.Key, "lb-") {
		t.Fatalf("key create: %v %q", err, key.Key)
	}
	t.Setenv("LOGBOOK_API_KEY", key.Key)
	cmd("project", "create", "vision/segmentation")
	var b bytes.Buffer
	if err := run(ctx, []string{"user", "create", "bob"}, &b, &b); err == nil || !strings.Contains(err.Error(), "only a site admin may create users") {
		t.Errorf("alice creating a user: %v, want the site-admin refusal", err)
	}
	if err := run(ctx, []string{"project", "create", "no-slash"}, &b, &b); err == nil || !strings.Contains(err.Error(), "<entity>/<project>") {
		t.Errorf("bad project argument: %v", err)
	}
}
