package projections

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// RunQuery selects, orders and pages a project's runs. Empty fields match
// everything.
type RunQuery struct {
	JobType string   `json:"job_type,omitempty"`
	Group   string   `json:"group,omitempty"`
	Owner   string   `json:"owner,omitempty"`
	States  []string `json:"states,omitempty"`   // any of
	TagsAny []string `json:"tags_any,omitempty"` // at least one of
	TagsAll []string `json:"tags_all,omitempty"` // every one of
	// Conds compare config values and summary metrics (see ParseCond).
	Conds []Cond `json:"conds,omitempty"`
	// Search keeps runs whose name or id contains it (case-insensitive).
	Search string `json:"search,omitempty"`
	// Sort is "created_at" (default), "name", "updated_at", "state",
	// "owner", "job_type", "group", "summary.<metric>" or
	// "config.<path>"; Desc reverses it. Runs without the value come last
	// either way; config numbers sort before config text; ties are broken
	// by run id.
	Sort string `json:"sort,omitempty"`
	Desc bool   `json:"desc,omitempty"`
	// Cursor continues after the last run of the previous page.
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	// Fields, when set, trims each run to what a table shows: its base
	// fields (see RunFields), the config paths named "config.<path>"
	// (nested again), the summary values named "summary.<metric>", and
	// "metrics" (every metric's aggregates) only if named.
	Fields []string `json:"fields,omitempty"`
}

// Cond is one comparison: Field "config" (Path a dotted key path such as
// "optimizer.lr") or "summary" (Path a metric name), Op one of = != < <= >
// >=, against Value (compared as a number when both sides are numbers).
type Cond struct {
	Field string `json:"field"`
	Path  string `json:"path"`
	Op    string `json:"op"`
	Value string `json:"value"`
	num   float64
	isNum bool
}

// ParseCond parses "config.<path><op><value>" or
// "summary.<metric><op><value>", op one of = != < <= > >=, for example
// "config.optimizer.lr>=0.001" or "summary.val/loss<0.3".
func ParseCond(s string) (Cond, error) {
	var c Cond
	switch {
	case strings.HasPrefix(s, "config."):
		c.Field = "config"
	case strings.HasPrefix(s, "summary."):
		c.Field = "summary"
	default:
		return c, fmt.Errorf("filter %q must start with \"config.\" or \"summary.\"", s)
	}
	rest := s[len(c.Field)+1:]
	i := strings.IndexAny(rest, "=!<>")
	if i <= 0 {
		return c, fmt.Errorf("filter %q needs a key and one of = != < <= > >= and a value, as in config.optimizer.lr>=0.001", s)
	}
	c.Path = rest[:i]
	op := rest[i:]
	for _, o := range []string{"!=", "<=", ">=", "=", "<", ">"} {
		if strings.HasPrefix(op, o) {
			c.Op, c.Value = o, op[len(o):]
			break
		}
	}
	if c.Op == "" || c.Value == "" {
		return c, fmt.Errorf("filter %q needs a key and one of = != < <= > >= and a value, as in config.optimizer.lr>=0.001", s)
	}
	return c, c.compile()
}

func (c *Cond) compile() error {
	switch c.Op {
	case "=", "!=", "<", "<=", ">", ">=":
	default:
		return fmt.Errorf("filter on %s.%s: unknown operator %q", c.Field, c.Path, c.Op)
	}
	if c.Field != "config" && c.Field != "summary" {
		return fmt.Errorf("filters compare config or summary values, not %q", c.Field)
	}
	if c.Path == "" {
		return fmt.Errorf("filter on %s needs a key", c.Field)
	}
	f, err := strconv.ParseFloat(c.Value, 64)
	c.num, c.isNum = f, err == nil
	if !c.isNum && c.Op != "=" && c.Op != "!=" {
		return fmt.Errorf("filter %s.%s%s%s: %s compares numbers, and %q is not one", c.Field, c.Path, c.Op, c.Value, c.Op, c.Value)
	}
	if c.Field == "summary" && !c.isNum {
		return fmt.Errorf("filter summary.%s%s%s: summary values are numbers, and %q is not one", c.Path, c.Op, c.Value, c.Value)
	}
	return nil
}

// Validate checks a query (it may have come over the wire).
func (q *RunQuery) Validate() error {
	for i := range q.Conds {
		if err := q.Conds[i].compile(); err != nil {
			return err
		}
	}
	if _, err := sortOf(q.Sort); err != nil {
		return err
	}
	if q.Limit < 0 {
		return fmt.Errorf("limit must not be negative")
	}
	return nil
}

func (c *Cond) match(e *runEntry) bool {
	if c.Field == "summary" {
		v, ok := e.summary[c.Path]
		if !ok || math.IsNaN(v) {
			return c.Op == "!="
		}
		return cmpNum(v, c.Op, c.num)
	}
	v, ok := e.config[c.Path]
	if !ok {
		return c.Op == "!="
	}
	if x, ok := v.(float64); ok {
		if c.isNum {
			return cmpNum(x, c.Op, c.num)
		}
		return c.Op == "!="
	}
	if c.Op != "=" && c.Op != "!=" {
		return false // ranges compare numbers only
	}
	switch x := v.(type) {
	case string:
		return (x == c.Value) == (c.Op == "=")
	case bool:
		return (strconv.FormatBool(x) == c.Value) == (c.Op == "=")
	}
	return c.Op == "!="
}

func cmpNum(a float64, op string, b float64) bool {
	switch op {
	case "=":
		return a == b
	case "!=":
		return a != b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	case ">=":
		return a >= b
	}
	return false
}

// runEntry is a run in the in-memory index: the filterable and sortable
// fields extracted once, and the API document encoded once.
type runEntry struct {
	run     *Run // never changed after indexing
	config  map[string]any
	summary map[string]float64
	created int64
	updated int64
	// seq is the read model's sequence when this version of the run was
	// indexed (for a project loaded from Badger, the sequence at loading):
	// RunChanges reports runs indexed after a client's sequence.
	seq uint64

	once sync.Once
	doc  []byte
}

// Doc is the run as the API shows it: the run document and its summary.
func (e *runEntry) Doc() []byte {
	e.once.Do(func() { e.doc, _ = MarshalRunView(e.run) })
	return e.doc
}

// MarshalRunView encodes a run as the API shows it: its document and its
// summary (last values overridden by explicit ones).
func MarshalRunView(r *Run) ([]byte, error) {
	return json.Marshal(struct {
		*Run
		Summary map[string]events.Value `json:"summary"`
	}{r, r.Summary()})
}

func newEntry(r *Run, prev *runEntry) *runEntry {
	e := &runEntry{run: r, created: r.CreatedAt.UnixNano(), updated: r.UpdatedAt.UnixNano()}
	if prev != nil && bytes.Equal(prev.run.Config, r.Config) {
		e.config = prev.config
	} else {
		e.config = map[string]any{}
		var v any
		if json.Unmarshal(r.Config, &v) == nil {
			flatten("", v, e.config)
		}
	}
	sum := r.Summary()
	e.summary = make(map[string]float64, len(sum))
	for k, v := range sum {
		e.summary[k] = float64(v)
	}
	return e
}

// flatten indexes nested config values by dotted path. A W&B-style
// {"value": x, "desc": ...} wrapper is also indexed as x at its own path.
func flatten(prefix string, v any, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		if inner, ok := x["value"]; ok && prefix != "" && len(x) <= 2 {
			if _, isMap := inner.(map[string]any); !isMap {
				out[prefix] = inner
			}
		}
		for k, val := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, val, out)
		}
	case []any:
		for i, val := range x {
			flatten(prefix+"."+strconv.Itoa(i), val, out)
		}
	default:
		if prefix != "" {
			out[prefix] = x
		}
	}
}

// runIndex keeps the runs of recently queried projects in memory, so a
// search never decodes run documents. A project is loaded from Badger on
// its first query; after that the fold updates it on every commit.
type runIndex struct {
	mu       sync.RWMutex
	projects map[string]map[string]*runEntry // project key -> run key -> entry
}

func (s *Store) index() *runIndex {
	s.idxOnce.Do(func() { s.idx = &runIndex{projects: map[string]map[string]*runEntry{}} })
	return s.idx
}

// update applies the documents a fold committed: nil runs are deleted runs,
// nil projects deleted projects.
func (x *runIndex) update(runs map[string]*Run, projects map[string]*Project, seq uint64) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, p := range projects {
		if p == nil {
			delete(x.projects, strings.TrimPrefix(k, "proj/"))
		}
	}
	for k, r := range runs {
		pk := projectOfRunKey(k)
		entries, ok := x.projects[pk]
		if !ok {
			continue
		}
		if r == nil {
			delete(entries, k)
			continue
		}
		e := newEntry(r, entries[k])
		e.seq = seq
		entries[k] = e
	}
}

// projectOfRunKey maps "run/<e>/<p>/<id>" to "<e>/<p>".
func projectOfRunKey(k string) string {
	k = strings.TrimPrefix(k, "run/")
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		return k[:i]
	}
	return k
}

// entries returns the project's runs, loading them on first use.
func (s *Store) entries(entity, project string) ([]*runEntry, error) {
	pk := entity + "/" + project
	s.index().mu.RLock()
	m, ok := s.index().projects[pk]
	if ok {
		out := make([]*runEntry, 0, len(m))
		for _, e := range m {
			out = append(out, e)
		}
		s.index().mu.RUnlock()
		return out, nil
	}
	s.index().mu.RUnlock()
	s.index().mu.Lock()
	defer s.index().mu.Unlock()
	if m, ok := s.index().projects[pk]; ok {
		out := make([]*runEntry, 0, len(m))
		for _, e := range m {
			out = append(out, e)
		}
		return out, nil
	}
	// The read transaction starts under the index lock: a commit that it
	// does not see is applied to the index after the lock is released.
	m = map[string]*runEntry{}
	s.mu.Lock()
	loadedAt := s.seq
	s.mu.Unlock()
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = runPrefix(entity, project)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			r := new(Run)
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, r) }); err != nil {
				return err
			}
			e := newEntry(r, nil)
			e.seq = loadedAt
			m[string(it.Item().Key())] = e
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.index().projects[pk] = m
	out := make([]*runEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out, nil
}

func (q *RunQuery) match(e *runEntry) bool {
	r := e.run
	if q.JobType != "" && r.JobType != q.JobType || q.Group != "" && r.Group != q.Group || q.Owner != "" && r.Owner != q.Owner {
		return false
	}
	if q.Search != "" && !containsFold(r.Name, q.Search) && !containsFold(r.ID, q.Search) {
		return false
	}
	if len(q.States) > 0 && !slices.Contains(q.States, r.State) {
		return false
	}
	for _, t := range q.TagsAll {
		if !slices.Contains(r.Tags, t) {
			return false
		}
	}
	if len(q.TagsAny) > 0 && !slices.ContainsFunc(q.TagsAny, func(t string) bool { return slices.Contains(r.Tags, t) }) {
		return false
	}
	for i := range q.Conds {
		if !q.Conds[i].match(e) {
			return false
		}
	}
	return true
}

// sortKey is a run's position in an order: a number or a string, missing
// values last, then the run id.
type sortKey struct {
	Rank    int     `json:"r,omitempty"` // config values: numbers 0, text 1
	Num     float64 `json:"n,omitempty"`
	Str     string  `json:"s,omitempty"`
	Missing bool    `json:"m,omitempty"`
	ID      string  `json:"i"`
}

type sortSpec struct {
	kind   string // created_at, updated_at, name, state, owner, job_type, group, summary, config
	metric string // the summary metric or config path
}

func sortOf(s string) (sortSpec, error) {
	switch {
	case s == "" || s == "created_at" || s == "start" || s == "started_at":
		return sortSpec{kind: "created_at"}, nil
	case s == "updated_at" || s == "name" || s == "state" || s == "owner" || s == "job_type" || s == "group":
		return sortSpec{kind: s}, nil
	case strings.HasPrefix(s, "summary.") && len(s) > len("summary."):
		return sortSpec{kind: "summary", metric: s[len("summary."):]}, nil
	case strings.HasPrefix(s, "config.") && len(s) > len("config."):
		return sortSpec{kind: "config", metric: s[len("config."):]}, nil
	}
	return sortSpec{}, fmt.Errorf("cannot sort by %q: sort by created_at, updated_at, name, state, owner, job_type, group, summary.<metric> or config.<path> (prefix - for descending)", s)
}

func (sp sortSpec) key(e *runEntry) sortKey {
	k := sortKey{ID: e.run.ID}
	switch sp.kind {
	case "created_at":
		k.Num = float64(e.created)
	case "updated_at":
		k.Num = float64(e.updated)
	case "name":
		k.Str = e.run.Name
	case "state", "owner", "job_type", "group":
		k.Str = map[string]string{"state": e.run.State, "owner": e.run.Owner, "job_type": e.run.JobType, "group": e.run.Group}[sp.kind]
		k.Missing = k.Str == ""
	case "config":
		switch v := e.config[sp.metric].(type) {
		case float64:
			k.Num = v
		case string:
			k.Rank, k.Str = 1, v
		case bool:
			k.Rank, k.Str = 1, strconv.FormatBool(v)
		default: // absent, null, or an object or list
			k.Missing = true
		}
	case "summary":
		v, ok := e.summary[sp.metric]
		k.Num, k.Missing = v, !ok || math.IsNaN(v)
	}
	return k
}

func compareKeys(a, b sortKey, desc bool) int {
	if a.Missing != b.Missing {
		if a.Missing {
			return 1
		}
		return -1
	}
	c := cmp.Compare(a.Rank, b.Rank)
	if c == 0 {
		c = cmp.Compare(a.Num, b.Num)
	}
	if c == 0 {
		c = strings.Compare(a.Str, b.Str)
	}
	if desc {
		c = -c
	}
	if c == 0 {
		c = strings.Compare(a.ID, b.ID)
	}
	return c
}

// RunPage is a page of a search.
type RunPage struct {
	// Runs are the API documents of the page's runs (see MarshalRunView).
	Runs []json.RawMessage `json:"runs"`
	// Total counts every run that matches, on every page.
	Total int `json:"total"`
	// NextCursor continues after this page; empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// DefaultRunLimit and MaxRunLimit bound a page of runs.
const (
	DefaultRunLimit = 1000
	MaxRunLimit     = 5000
)

// ErrBadQuery wraps errors in a search a user can fix.
type ErrBadQuery struct{ Err error }

func (e ErrBadQuery) Error() string { return e.Err.Error() }

// SearchRuns filters, sorts and pages a project's runs from the in-memory
// index.
func (s *Store) SearchRuns(entity, project string, q RunQuery) (RunPage, error) {
	if err := q.Validate(); err != nil {
		return RunPage{}, ErrBadQuery{err}
	}
	sp, _ := sortOf(q.Sort)
	var after *sortKey
	if q.Cursor != "" {
		k, err := decodeCursor(q.Cursor, q.Sort, q.Desc)
		if err != nil {
			return RunPage{}, ErrBadQuery{err}
		}
		after = &k
	}
	all, err := s.entries(entity, project)
	if err != nil {
		return RunPage{}, err
	}
	type keyed struct {
		k sortKey
		e *runEntry
	}
	matched := make([]keyed, 0, len(all))
	for _, e := range all {
		if q.match(e) {
			matched = append(matched, keyed{sp.key(e), e})
		}
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultRunLimit
	}
	limit = min(limit, MaxRunLimit)
	// Only the runs after the cursor, and of those the first limit+1, need
	// ordering: select them, then sort the page.
	page := make([]keyed, 0, min(len(matched), 4*limit))
	for _, m := range matched {
		if after == nil || compareKeys(m.k, *after, q.Desc) > 0 {
			page = append(page, m)
		}
	}
	cmpK := func(a, b keyed) int { return compareKeys(a.k, b.k, q.Desc) }
	if len(page) > limit+1 {
		selectSmallest(page, limit+1, cmpK)
		page = page[:limit+1]
	}
	slices.SortFunc(page, cmpK)
	out := RunPage{Total: len(matched), Runs: make([]json.RawMessage, 0, min(limit, len(page)))}
	if len(page) > limit {
		page = page[:limit]
		out.NextCursor = encodeCursor(page[limit-1].k, q.Sort, q.Desc)
	}
	for _, m := range page {
		if q.Fields == nil {
			out.Runs = append(out.Runs, m.e.Doc())
			continue
		}
		doc, err := m.e.fieldsDoc(q.Fields)
		if err != nil {
			return RunPage{}, err
		}
		out.Runs = append(out.Runs, doc)
	}
	return out, nil
}

// RunChanges are the runs of a project that changed after a sequence.
type RunChanges struct {
	// Seq is the read model's sequence when the changes were read: pass it
	// as the next since.
	Seq uint64 `json:"seq"`
	// Total counts the runs that match the query now (a run started or
	// deleted changes it; deleted runs are not listed).
	Total int `json:"total"`
	// Runs changed after since and match the query, oldest change first
	// (documents as SearchRuns writes them, with the query's fields).
	Runs []json.RawMessage `json:"runs"`
	// More is set when more than MaxRunChanges changed: reload instead.
	More bool `json:"more,omitempty"`
}

// MaxRunChanges bounds one answer of RunChanges.
const MaxRunChanges = 500

// RunChanges answers the runs matching q (its filters and fields; sort and
// paging do not apply) indexed after sequence since. Since 0 lists none:
// the caller starts from the answer's Seq.
func (s *Store) RunChanges(entity, project string, since uint64, q RunQuery) (RunChanges, error) {
	s.mu.Lock()
	out := RunChanges{Seq: s.seq, Runs: []json.RawMessage{}}
	s.mu.Unlock()
	all, err := s.entries(entity, project)
	if err != nil {
		return out, err
	}
	var changed []*runEntry
	for _, e := range all {
		if !q.match(e) {
			continue
		}
		out.Total++
		if e.seq > since && since > 0 {
			changed = append(changed, e)
		}
	}
	slices.SortFunc(changed, func(a, b *runEntry) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), strings.Compare(a.run.ID, b.run.ID))
	})
	if len(changed) > MaxRunChanges {
		changed, out.More = changed[:MaxRunChanges], true
	}
	for _, e := range changed {
		doc := e.Doc()
		if q.Fields != nil {
			if doc, err = e.fieldsDoc(q.Fields); err != nil {
				return out, err
			}
		}
		out.Runs = append(out.Runs, doc)
	}
	return out, nil
}

// RunFields are what a run carries in a search with fields: what a runs
// table shows whatever columns are chosen.
type RunFields struct {
	ID        string                    `json:"id"`
	Name      string                    `json:"name"`
	Owner     string                    `json:"owner"`
	State     string                    `json:"state"`
	JobType   string                    `json:"job_type,omitempty"`
	Group     string                    `json:"group,omitempty"`
	Tags      []string                  `json:"tags"`
	ExitCode  *int                      `json:"exit_code,omitempty"`
	CreatedAt time.Time                 `json:"created_at"`
	UpdatedAt time.Time                 `json:"updated_at"`
	Config    map[string]any            `json:"config"`
	Summary   map[string]events.Value   `json:"summary"`
	Metrics   map[string]*MetricSummary `json:"metrics,omitempty"`
}

// fieldsDoc encodes the run with only the chosen config paths (nested
// again, so the document keeps the shape of the full one) and summary
// values.
func (e *runEntry) fieldsDoc(fields []string) ([]byte, error) {
	r := e.run
	d := RunFields{ID: r.ID, Name: r.Name, Owner: r.Owner, State: r.State, JobType: r.JobType, Group: r.Group, Tags: r.Tags,
		ExitCode: r.ExitCode, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Config: map[string]any{}, Summary: map[string]events.Value{}}
	var sum map[string]events.Value
	var tree any // the whole config, decoded if a path is not in the index (a list)
	for _, f := range fields {
		switch {
		case f == "metrics":
			d.Metrics = r.Metrics
		case strings.HasPrefix(f, "config."):
			path := f[len("config."):]
			v, ok := e.config[path]
			if !ok {
				if tree == nil && json.Unmarshal(r.Config, &tree) != nil {
					tree = map[string]any{}
				}
				v, ok = lookupPath(tree, strings.Split(path, "."))
			}
			if ok {
				setPath(d.Config, strings.Split(path, "."), v)
			}
		case strings.HasPrefix(f, "summary."):
			if sum == nil {
				sum = r.Summary()
			}
			if v, ok := sum[f[len("summary."):]]; ok {
				d.Summary[f[len("summary."):]] = v
			}
		}
	}
	return json.Marshal(d)
}

// setPath sets m[a][b]...[z] = v, making the maps on the way (a path that
// runs into a value keeps the value).
func setPath(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			if _, taken := m[k]; taken {
				return
			}
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// lookupPath finds a value (a list or an object too) by its dotted path.
func lookupPath(v any, path []string) (any, bool) {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// containsFold reports whether sub is in s, ignoring case.
func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// selectSmallest moves the k smallest elements to the front (quickselect).
func selectSmallest[T any](a []T, k int, c func(T, T) int) {
	lo, hi := 0, len(a)-1
	for lo < hi {
		p := a[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for c(a[i], p) < 0 {
				i++
			}
			for c(a[j], p) > 0 {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
		}
	}
}

type cursor struct {
	Sort string  `json:"o"`
	Desc bool    `json:"d,omitempty"`
	Key  sortKey `json:"k"`
}

func encodeCursor(k sortKey, sort string, desc bool) string {
	b, _ := json.Marshal(cursor{Sort: sort, Desc: desc, Key: k})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, sort string, desc bool) (sortKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c cursor
	if err != nil || json.Unmarshal(b, &c) != nil {
		return sortKey{}, fmt.Errorf("cursor %q is not one this API gave out", s)
	}
	if c.Sort != sort || c.Desc != desc {
		return sortKey{}, fmt.Errorf("the cursor belongs to a search sorted by %q; repeat the same sort to continue it", c.Sort)
	}
	return c.Key, nil
}

// GroupCount is how many matching runs share a value.
type GroupCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
	// Aggregates of summary metrics over the group's runs, by metric.
	Aggregates map[string]Aggregate `json:"aggregates,omitempty"`
}

// Aggregate summarises a summary metric over a group's runs that have a
// finite value of it (Count of them).
type Aggregate struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

// CountRuns groups the runs that match q (sort and paging ignored) by
// job_type, group, state, owner, tag (a run counts under each of its tags)
// or config.<path> (the value as text; numbers as JSON writes them), most
// common first; runs without the value count under "". Each group carries
// the aggregates of the summary metrics named in aggs ("summary.<metric>").
func (s *Store) CountRuns(entity, project string, q RunQuery, by string, aggs ...string) ([]GroupCount, int, error) {
	q.Sort, q.Cursor = "", ""
	if err := q.Validate(); err != nil {
		return nil, 0, ErrBadQuery{err}
	}
	field := map[string]func(*runEntry) []string{
		"job_type": func(e *runEntry) []string { return []string{e.run.JobType} },
		"group":    func(e *runEntry) []string { return []string{e.run.Group} },
		"state":    func(e *runEntry) []string { return []string{e.run.State} },
		"owner":    func(e *runEntry) []string { return []string{e.run.Owner} },
		"tag": func(e *runEntry) []string {
			if len(e.run.Tags) == 0 {
				return []string{""}
			}
			return e.run.Tags
		},
	}[by]
	if path, ok := strings.CutPrefix(by, "config."); ok && path != "" {
		field = func(e *runEntry) []string { return []string{configText(e.config[path])} }
	}
	if field == nil {
		return nil, 0, ErrBadQuery{fmt.Errorf("group runs by job_type, group, state, owner, tag or config.<path>, not %q", by)}
	}
	metrics := make([]string, 0, len(aggs))
	for _, a := range aggs {
		m, ok := strings.CutPrefix(a, "summary.")
		if !ok || m == "" {
			return nil, 0, ErrBadQuery{fmt.Errorf("aggregate summary.<metric>, not %q", a)}
		}
		metrics = append(metrics, m)
	}
	all, err := s.entries(entity, project)
	if err != nil {
		return nil, 0, err
	}
	groups := map[string]*GroupCount{}
	total := 0
	for _, e := range all {
		if !q.match(e) {
			continue
		}
		total++
		for _, v := range field(e) {
			g := groups[v]
			if g == nil {
				g = &GroupCount{Value: v}
				groups[v] = g
			}
			g.Count++
			for _, m := range metrics {
				x, ok := e.summary[m]
				if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
					continue
				}
				if g.Aggregates == nil {
					g.Aggregates = map[string]Aggregate{}
				}
				a, seen := g.Aggregates["summary."+m]
				if !seen {
					a.Min, a.Max = x, x
				}
				a.Mean = (a.Mean*float64(a.Count) + x) / float64(a.Count+1)
				a.Count++
				a.Min, a.Max = min(a.Min, x), max(a.Max, x)
				g.Aggregates["summary."+m] = a
			}
		}
	}
	out := make([]GroupCount, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out, total, nil
}

// configText is a config value as a group's name: text as it is, numbers
// and booleans as JSON writes them, nothing for a missing value, JSON for
// a list or an object.
func configText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
