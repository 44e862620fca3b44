package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/logbook/logbook/events"
)

// runMeta is what the policy keeps of a run beyond Run, to bound line
// offsets and to tell an update that changes nothing: the written line
// count per file, the descriptive fields, and a hash per top-level config
// key of its value (not the config itself: 16 bytes a key).
type runMeta struct {
	lines                 map[string]int64 // file -> lines written (the next line number)
	jobType, group, notes string
	tags                  []string
	config, wandb         map[uint64]uint64 // hash of a top-level key -> hash of its compact value
}

func (p *Project) runMeta(run string) *runMeta {
	if p.meta == nil {
		p.meta = map[string]*runMeta{}
	}
	m := p.meta[run]
	if m == nil {
		m = &runMeta{lines: map[string]int64{}, config: map[uint64]uint64{}, wandb: map[uint64]uint64{}}
		p.meta[run] = m
	}
	return m
}

// applyRunMeta folds a run event into the run's meta (Apply calls it).
func (p *Project) applyRunMeta(e events.Event) {
	switch pl := e.Payload.(type) {
	case events.RunStartedV1:
		delete(p.meta, pl.RunID)
		m := p.runMeta(pl.RunID)
		m.jobType, m.group, m.notes, m.tags = pl.JobType, pl.Group, pl.Notes, slices.Clone(pl.Tags)
		mergeHashes(m.config, pl.Config)
		mergeHashes(m.wandb, pl.Wandb)
	case events.RunResumedV1:
		mergeHashes(p.runMeta(e.Run).config, pl.Config)
	case events.RunUpdatedV1:
		m := p.runMeta(e.Run)
		if pl.JobType != nil {
			m.jobType = *pl.JobType
		}
		if pl.Group != nil {
			m.group = *pl.Group
		}
		if pl.Notes != nil {
			m.notes = *pl.Notes
		}
		m.tags = withTags(m.tags, pl)
		mergeHashes(m.config, pl.Config)
		mergeHashes(m.wandb, pl.Wandb)
	case events.RunLinesWrittenV1:
		m := p.runMeta(e.Run)
		if end := pl.Offset + int64(len(pl.Lines)); end > m.lines[pl.File] {
			m.lines[pl.File] = end
		}
	case events.RunDeletedV1:
		delete(p.meta, e.Run)
	}
}

// withTags applies an update's tag changes as the read model does.
func withTags(tags []string, pl events.RunUpdatedV1) []string {
	for _, t := range pl.AddTags {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return slices.DeleteFunc(tags, func(t string) bool { return slices.Contains(pl.RemoveTags, t) })
}

// unchangedBy reports whether applying update pl to run would change
// nothing (the name is compared by the caller): such an update appends no
// event.
func (p *Project) unchangedBy(run string, pl events.RunUpdatedV1) bool {
	m := p.runMeta(run)
	if pl.Name != nil || pl.JobType != nil && *pl.JobType != m.jobType || pl.Group != nil && *pl.Group != m.group ||
		pl.Notes != nil && *pl.Notes != m.notes {
		return false
	}
	if len(pl.AddTags)+len(pl.RemoveTags) > 0 && !slices.Equal(m.tags, withTags(slices.Clone(m.tags), pl)) {
		return false
	}
	return hashesHold(m.config, pl.Config) && hashesHold(m.wandb, pl.Wandb)
}

// checkLineOffset refuses a write of lines that would leave a gap: lines
// are written at the next line number or over lines already written (a
// retry, a rewritten progress bar), never beyond, so a client cannot claim
// a billion lines it never sent.
func (p *Project) checkLineOffset(run string, pl events.RunLinesWrittenV1) error {
	if n := p.runMeta(run).lines[pl.File]; pl.Offset > n {
		return fmt.Errorf("%s: line offset %d is past the %d lines written so far; write from line %d on", pl.File, pl.Offset, n, n)
	}
	return nil
}

// mergeHashes sets the hashes of cfg's top-level keys in h, as the read
// model merges configs (an unreadable config changes nothing there either).
func mergeHashes(h map[uint64]uint64, cfg json.RawMessage) {
	kv, ok := configHashes(cfg)
	if !ok {
		return
	}
	for k, v := range kv {
		h[k] = v
	}
}

// hashesHold reports whether merging cfg into h would change nothing.
func hashesHold(h map[uint64]uint64, cfg json.RawMessage) bool {
	if len(cfg) == 0 {
		return true
	}
	kv, ok := configHashes(cfg)
	if !ok {
		return false
	}
	for k, v := range kv {
		if old, ok := h[k]; !ok || old != v {
			return false
		}
	}
	return true
}

func configHashes(cfg json.RawMessage) (map[uint64]uint64, bool) {
	if len(cfg) == 0 {
		return nil, true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(cfg, &m) != nil {
		return nil, false
	}
	out := make(map[uint64]uint64, len(m))
	var buf bytes.Buffer
	for k, v := range m {
		buf.Reset()
		if json.Compact(&buf, v) != nil {
			return nil, false
		}
		out[hash64([]byte(k))] = hash64(buf.Bytes())
	}
	return out, true
}

func hash64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}
