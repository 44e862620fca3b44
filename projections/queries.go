package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// UserByKeyHash returns the user owning an active API key hash.
func (s *Store) UserByKeyHash(hash string) (User, error) {
	var u User
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(keyHashKey(hash))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var name string
		if err := it.Value(func(v []byte) error {
			name, _, _ = strings.Cut(string(v), "\x00")
			return nil
		}); err != nil {
			return err
		}
		return getJSON(txn, userKey(name), &u)
	})
	return u, err
}

// User returns a user by name.
func (s *Store) User(name string) (User, error) {
	var u User
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, userKey(name), &u) })
	return u, err
}

// Project returns a project.
func (s *Store) Project(entity, project string) (Project, error) {
	var p Project
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, projectKey(entity, project), &p) })
	return p, err
}

// TeamRole returns user's role in a team entity, or "" if none (or if the
// entity is not a team).
func (s *Store) TeamRole(entity, user string) (events.TeamRole, error) {
	var t Team
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, teamKey(entity), &t) })
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return t.Members[user], err
}

// Projects returns every live project, sorted by entity and name, with the
// team roles of user in their entities.
func (s *Store) Projects(user string) ([]Project, map[string]events.TeamRole, error) {
	var out []Project
	teams := map[string]events.TeamRole{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("proj/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var p Project
			if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &p) }); err != nil {
				return err
			}
			out = append(out, p)
		}
		opts.Prefix = []byte("team/")
		it2 := txn.NewIterator(opts)
		defer it2.Close()
		for it2.Rewind(); it2.Valid(); it2.Next() {
			var t Team
			if err := it2.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &t) }); err != nil {
				return err
			}
			if r, ok := t.Members[user]; ok {
				teams[t.Name] = r
			}
		}
		return nil
	})
	return out, teams, err
}

// RunFilter selects runs of a project. Empty fields match everything.
type RunFilter struct {
	JobType string
	Tag     string
	State   string
	Owner   string
	Group   string
}

func (f RunFilter) match(r *Run) bool {
	return (f.JobType == "" || r.JobType == f.JobType) &&
		(f.State == "" || r.State == f.State) &&
		(f.Owner == "" || r.Owner == f.Owner) &&
		(f.Group == "" || r.Group == f.Group) &&
		(f.Tag == "" || slices.Contains(r.Tags, f.Tag))
}

// Runs returns the runs of a project that match f, oldest first.
func (s *Store) Runs(entity, project string, f RunFilter) ([]Run, error) {
	var out []Run
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = runPrefix(entity, project)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r Run
			if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &r) }); err != nil {
				return err
			}
			if f.match(&r) {
				out = append(out, r)
			}
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// Run returns one run.
func (s *Store) Run(entity, project, id string) (Run, error) {
	var r Run
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, runKey(entity, project, id), &r) })
	return r, err
}

// HistoryRange selects a metric's points with minStep <= step <= maxStep.
type HistoryRange struct {
	Metric  string
	MinStep int64
	MaxStep int64 // inclusive; <= 0 means no upper bound
	Limit   int   // 0 for no limit
}

// History calls fn for each point of a run's metric in the range, in step
// order, until fn returns false.
func (s *Store) History(entity, project, run string, q HistoryRange, fn func(Point) bool) error {
	prefix := histMetricPrefix(entity, project, run, q.Metric)
	maxStep := q.MaxStep
	if maxStep <= 0 {
		maxStep = 1<<63 - 1
	}
	n := 0
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		start := chunkStart(txn, prefix, q.MinStep)
		var c chunk
		var pts []Point
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			k := it.Item().Key()
			if first := int64(binary.BigEndian.Uint64(k[len(k)-8:])); first > maxStep {
				break
			}
			err := it.Item().Value(func(v []byte) error {
				if err := c.parse(v); err != nil {
					return err
				}
				var err error
				pts, err = c.points(q.MinStep, pts[:0])
				return err
			})
			if err != nil {
				return err
			}
			stop := false
			for _, p := range pts {
				if p.Step > maxStep || (q.Limit > 0 && n >= q.Limit) || !fn(p) {
					stop = true
					break
				}
				n++
			}
			if stop {
				return nil
			}
		}
		return nil
	})
}

// Metrics lists the metric names with history in a run.
func (s *Store) Metrics(entity, project, run string) ([]string, error) {
	seen := map[string]struct{}{}
	prefix := histRunPrefix(entity, project, run)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = prefix, false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rest := it.Item().Key()[len(prefix):]
			if i := bytes.IndexByte(rest, 0); i >= 0 {
				seen[string(rest[:i])] = struct{}{}
			}
		}
		return nil
	})
	return sortedStrings(seen), err
}

// Lines calls fn for the lines of a run's text file from line number from
// on, in order, until fn returns false or limit lines (0: no limit) were
// given.
func (s *Store) Lines(entity, project, run, file string, from int64, limit int, fn func(Line) bool) error {
	prefix := lineFilePrefix(entity, project, run, file)
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		n := 0
		for it.Seek(stepKey(prefix, from)); it.Valid(); it.Next() {
			if limit > 0 && n >= limit {
				return nil
			}
			k := it.Item().Key()
			l := Line{N: int64(binary.BigEndian.Uint64(k[len(k)-8:]))}
			if err := it.Item().Value(func(v []byte) error { l.Text = string(v); return nil }); err != nil {
				return err
			}
			n++
			if !fn(l) {
				return nil
			}
		}
		return nil
	})
}
