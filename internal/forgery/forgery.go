// Package forgery is the catalogue of what a client holding an API key may
// try over NATS to get something stored, or some service called, outside
// its own proposal subject: reply subjects naming every subject of
// Logbook's account, and every JetStream header with a hostile value. The
// access tests (bus, e2e) send their forged messages with these.
//
// nats-server checks permissions on the subject of a publish, not on its
// reply subject nor on headers; JetStream publishes its acknowledgement
// to the reply subject, in the account that stored the message.
package forgery

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Replies returns reply subjects that a client must never be able to
// reach, read through js (a connection of Logbook's components):
//
//   - for every stream (the inbox, events and rejections streams, and the
//     streams behind KV buckets and object stores): one concrete subject
//     per subject filter, and every subject stored in it;
//   - $JS.API verbs on every stream and consumer, and account-wide ones;
//   - $JS.ACK subjects of every consumer;
//   - the proposal subjects and inboxes of every victim, the decision
//     notices (lb.decided.*), the read service (lb.read), the read-model
//     admin requests (lb.admin.>), the auth callout, service replies.
//
// prefix is the subject prefix ("lb").
func Replies(ctx context.Context, js jetstream.JetStream, prefix string, victims []string) ([]string, error) {
	var out []string
	add := func(s ...string) {
		for _, x := range s {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	names := js.StreamNames(ctx)
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	slices.Sort(streams)
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		for _, f := range info.Config.Subjects {
			add(Concrete(f))
			// A fast-batch reply (<prefix>.<id>.<flow>.<gap>.<seq>.<op>.$FI),
			// which JetStream parses for batch instructions.
			add(strings.TrimSuffix(Concrete(f), ".run_started")+".b1.10.ok.1.0.$FI",
				strings.TrimSuffix(Concrete(f), ".run_started")+".b1.10.fail.1.2.$FI")
		}
		stored := make([]string, 0, len(info.State.Subjects))
		for subj := range info.State.Subjects {
			stored = append(stored, subj)
		}
		slices.Sort(stored)
		add(stored...)
		add(
			"$JS.API.STREAM.INFO."+name,
			"$JS.API.STREAM.UPDATE."+name,
			"$JS.API.STREAM.DELETE."+name,
			"$JS.API.STREAM.PURGE."+name,
			"$JS.API.STREAM.MSG.DELETE."+name,
			"$JS.API.STREAM.MSG.GET."+name,
			"$JS.API.DIRECT.GET."+name,
			"$JS.API.STREAM.SNAPSHOT."+name,
			"$JS.API.STREAM.RESTORE."+name,
			"$JS.API.STREAM.LEADER.STEPDOWN."+name,
			"$JS.API.CONSUMER.CREATE."+name,
			"$JS.API.CONSUMER.DURABLE.CREATE."+name+".evil",
			"$JS.API.CONSUMER.LIST."+name,
		)
		consumers := s.ConsumerNames(ctx)
		for c := range consumers.Name() {
			add(
				"$JS.API.CONSUMER.DELETE."+name+"."+c,
				"$JS.API.CONSUMER.CREATE."+name+"."+c,
				"$JS.API.CONSUMER.MSG.NEXT."+name+"."+c,
				"$JS.API.CONSUMER.PAUSE."+name+"."+c,
				// JetStream acknowledgements: nats-server passes a reply
				// starting with $JS.ACK. through a service import as it is.
				"$JS.ACK."+name+"."+c+".1.1.1.0.0",
				"$JS.ACK."+name+"."+c+".1.1.1.1.1.0.0",
			)
		}
		if err := consumers.Err(); err != nil {
			return nil, fmt.Errorf("consumers of %s: %w", name, err)
		}
	}
	add("$JS.API.INFO", "$JS.API.STREAM.CREATE.EVIL", "$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES",
		"$JS.API.META.LEADER.STEPDOWN", "$JS.API.ACCOUNT.PURGE.LOGBOOK", "$JS.API.SERVER.REMOVE")
	for _, v := range victims {
		add(prefix+".in."+v+"."+v+"._.key_created", prefix+".in."+v+"."+v+".p.run_started", "_INBOX_"+v+".x")
	}
	add(prefix+".decided.01J0000000000000000000000", prefix+".read",
		prefix+".admin.readmodel.digest", prefix+".admin.readmodel.verify", prefix+".admin.readmodel.rebuild",
		prefix+".admin.readmodel.status",
		"$SYS.REQ.USER.AUTH", "$SYS.REQ.SERVER.PING", "$SYS.REQ.ACCOUNT.LOGBOOK.CONNZ", "_R_.x", "_INBOX.x")
	return out, nil
}

// Concrete turns a subject filter into one subject it matches.
func Concrete(filter string) string {
	toks := strings.Split(filter, ".")
	for i, t := range toks {
		switch t {
		case "*":
			toks[i] = "t1"
		case ">":
			toks[i] = "t1.p1.run_started"
		}
	}
	return strings.Join(toks, ".")
}

// Header is a named set of headers.
type Header struct {
	Name string
	H    nats.Header
}

// Headers returns every header JetStream (and nats-server) gives a meaning
// to, each with a hostile value, one set per header, plus a few
// combinations. victimSubject is a subject the attacker may not publish
// to (the events stream's), used where a header names a subject.
func Headers(victimSubject string) []Header {
	h := func(kv ...string) nats.Header {
		m := nats.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			m.Add(kv[i], kv[i+1])
		}
		return m
	}
	return []Header{
		{"none", nil},
		{"Nats-Msg-Id", h("Nats-Msg-Id", "forged-msg-id")},
		{"Nats-Expected-Stream", h("Nats-Expected-Stream", "LB_EVENTS")},
		{"Nats-Expected-Last-Sequence", h("Nats-Expected-Last-Sequence", "0")},
		{"Nats-Expected-Last-Subject-Sequence", h("Nats-Expected-Last-Subject-Sequence", "0")},
		{"Nats-Expected-Last-Subject-Sequence-Subject", h("Nats-Expected-Last-Subject-Sequence", "0", "Nats-Expected-Last-Subject-Sequence-Subject", victimSubject)},
		{"Nats-Expected-Last-Msg-Id", h("Nats-Expected-Last-Msg-Id", "x")},
		{"Nats-Rollup all", h("Nats-Rollup", "all")},
		{"Nats-Rollup sub", h("Nats-Rollup", "sub")},
		{"Nats-TTL", h("Nats-TTL", "1s")},
		{"Nats-TTL never", h("Nats-TTL", "never")},
		{"Nats-Marker-Reason", h("Nats-Marker-Reason", "Purge")},
		{"Nats-Incr", h("Nats-Incr", "1")},
		{"Nats-Batch start", h("Nats-Batch-Id", "forged", "Nats-Batch-Sequence", "1")},
		{"Nats-Batch commit", h("Nats-Batch-Id", "forged", "Nats-Batch-Sequence", "1", "Nats-Batch-Commit", "1")},
		{"Nats-Schedule", h("Nats-Schedule", "@every 1s", "Nats-Schedule-Target", victimSubject)},
		{"Nats-Schedule-At", h("Nats-Schedule", "@at 2020-01-01T00:00:00Z", "Nats-Schedule-Target", victimSubject, "Nats-Schedule-TTL", "1s")},
		{"Nats-Schedule-Source", h("Nats-Schedule", "@every 1s", "Nats-Schedule-Source", victimSubject, "Nats-Schedule-Target", victimSubject)},
		{"Nats-Required-Api-Level", h("Nats-Required-Api-Level", "0")},
		{"Nats-Request-Info", h("Nats-Request-Info", `{"acc":"LOGBOOK","user":"logbook","name":"ingest"}`)},
		{"Nats-Trace-Dest", h("Nats-Trace-Dest", victimSubject)},
		{"Nats-Trace-Only", h("Nats-Trace-Dest", victimSubject, "Nats-Trace-Only", "true")},
		{"Nats-Trace-Origin-Account", h("Nats-Trace-Origin-Account", "LOGBOOK")},
		{"traceparent", h("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		{"Nats-Stream/Subject/Sequence", h("Nats-Stream", "LB_EVENTS", "Nats-Subject", victimSubject, "Nats-Sequence", "1", "Nats-Time-Stamp", "2020-01-01T00:00:00Z")},
		{"Nats-Last-Sequence", h("Nats-Last-Sequence", "1", "Nats-Num-Pending", "0", "Nats-UpTo-Sequence", "1")},
		{"Nats-Stream-Source", h("Nats-Stream-Source", "LB_EVENTS 1 > > "+victimSubject)},
		{"Nats-Counter-Sources", h("Nats-Counter-Sources", `{"LB_EVENTS":{"x":"1"}}`)},
		{"Nats-Response-Type", h("Nats-Response-Type", "Stream")},
		{"Nats-Pin-Id", h("Nats-Pin-Id", "x")},
		{"Nats-Server-Xkey", h("Nats-Server-Xkey", "XAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")},
		{"Nats-No-Masking", h("Nats-No-Masking", "true")},
		{"Status", h("Status", "100", "Description", "Idle Heartbeat")},
		{"everything", h("Nats-Msg-Id", "forged-all", "Nats-Rollup", "all", "Nats-TTL", "1s", "Nats-Batch-Id", "all",
			"Nats-Batch-Sequence", "1", "Nats-Batch-Commit", "1", "Nats-Schedule", "@every 1s", "Nats-Schedule-Target", victimSubject,
			"Nats-Marker-Reason", "Remove", "Nats-Incr", "1", "Nats-Expected-Stream", "LB_PROPOSALS")},
	}
}
