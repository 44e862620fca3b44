package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
)

// strs is a repeatable string flag.
type strs []string

func (s *strs) String() string     { return strings.Join(*s, ",") }
func (s *strs) Set(v string) error { *s = append(*s, v); return nil }

// runs searches a project's runs with the API's filters, sort and paging.
func runs(fs *flag.FlagSet) Action {
	state := fs.String("state", "", "states, comma separated: running, finished, failed, killed, crashed")
	jobType := fs.String("job-type", "", "job type")
	group := fs.String("group", "", "group")
	owner := fs.String("owner", "", "owner's username")
	var tags, filters strs
	fs.Var(&tags, "tag", "a tag the runs have (repeatable: all of them)")
	tagsAny := fs.String("tags-any", "", "tags, comma separated: runs with at least one")
	fs.Var(&filters, "filter", "a comparison: config.<path><op><value> or summary.<metric><op><value> (repeatable)")
	sortBy := fs.String("sort", "", "[-]created_at, updated_at, name or summary.<metric> (- descending)")
	limit := fs.Int("limit", 50, "runs per page (1 to 5000)")
	cursor := fs.String("cursor", "", "the next page's cursor, as printed after a page")
	all := fs.Bool("all", false, "fetch every page")
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range map[string]string{"state": *state, "job_type": *jobType, "group": *group, "owner": *owner,
			"tags_any": *tagsAny, "sort": *sortBy, "cursor": *cursor} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q["tag"] = tags
		q["filter"] = append(append([]string{}, filters...), args[1:]...)
		q.Set("limit", strconv.Itoa(*limit))
		a, err := newAPI()
		if err != nil {
			return err
		}
		var page []map[string]any
		total, next := "", ""
		for {
			resp, err := a.do(ctx, "GET", p+"/runs?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			var got []map[string]any
			if err := json.Unmarshal(resp.body, &got); err != nil {
				return fmt.Errorf("runs: undecodable answer: %w", err)
			}
			page = append(page, got...)
			total, next = resp.header.Get("X-Total-Count"), resp.header.Get("X-Next-Cursor")
			if !*all || next == "" {
				break
			}
			q.Set("cursor", next)
		}
		v := runsView(page, *sortBy)
		if e.Format == "table" && !e.Quiet {
			v.note = fmt.Sprintf("%d of %s runs", len(page), total)
			if next != "" {
				v.note += fmt.Sprintf("; next page: -cursor %s (or -all)", next)
			}
		}
		body, _ := json.Marshal(page)
		return show(e, body, v)
	}
}

// runsView shows a run per row, with the summary metric sorted by (or the
// first few metrics the runs have).
func runsView(page []map[string]any, sortBy string) view {
	cols := []column{field("id", "id"), field("name", "name"), field("state", "state"), field("owner", "owner"),
		field("job type", "job_type"), field("tags", "tags"), when("created", "created_at")}
	metrics := map[string]bool{}
	if m, ok := strings.CutPrefix(strings.TrimPrefix(sortBy, "-"), "summary."); ok {
		metrics[m] = true
	}
	var names []string
	for _, r := range page {
		s, _ := r["summary"].(map[string]any)
		for k := range s {
			if !metrics[k] {
				names = append(names, k)
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if len(metrics) >= 4 {
			break
		}
		metrics[n] = true
	}
	keys := make([]string, 0, len(metrics))
	for k := range metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cols = append(cols, column{k, func(m map[string]any) string {
			s, _ := m["summary"].(map[string]any)
			return text(s[k])
		}})
	}
	return view{columns: cols, quiet: "id"}
}

// runShow prints one run: its fields, then config and summary as key/value
// rows.
func runShow(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		a, err := newAPI()
		if err != nil {
			return err
		}
		resp, err := a.do(ctx, "GET", p+"/runs/"+url.PathEscape(args[1]), nil)
		if err != nil {
			return err
		}
		if e.Format == "json" || e.Quiet {
			return show(e, resp.body, view{quiet: "id"})
		}
		var r map[string]any
		if err := json.Unmarshal(resp.body, &r); err != nil {
			return err
		}
		for _, k := range []string{"id", "name", "state", "owner", "job_type", "group", "tags", "notes", "created_at", "updated_at", "last_step", "exit_code"} {
			if v, ok := r[k]; ok && text(v) != "" {
				fmt.Fprintf(e.Out, "%-11s %s\n", k+":", text(v))
			}
		}
		for _, part := range []string{"config", "summary"} {
			m, _ := r[part].(map[string]any)
			if len(m) == 0 {
				continue
			}
			fmt.Fprintf(e.Out, "%s:\n", part)
			flat := map[string]string{}
			flatten("", m, flat)
			keys := make([]string, 0, len(flat))
			for k := range flat {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(e.Out, "  %s = %s\n", k, flat[k])
			}
		}
		return nil
	}
}

func flatten(prefix string, m map[string]any, out map[string]string) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flatten(prefix+k+".", sub, out)
			continue
		}
		out[prefix+k] = text(v)
	}
}

// history prints a run's history: a row per step with a column per
// metric, or one metric's points.
func history(fs *flag.FlagSet) Action {
	metric := fs.String("metric", "", "only this metric (its points, exact)")
	minStep := fs.Int64("min-step", 0, "from this step")
	maxStep := fs.Int64("max-step", 0, "up to this step (0: the last)")
	limit := fs.Int("limit", 0, "at most this many rows (the server's default if 0)")
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		q := url.Values{}
		if *metric != "" {
			q.Set("metric", *metric)
		}
		if *minStep > 0 {
			q.Set("min_step", strconv.FormatInt(*minStep, 10))
		}
		if *maxStep > 0 {
			q.Set("max_step", strconv.FormatInt(*maxStep, 10))
		}
		if *limit > 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
		a, err := newAPI()
		if err != nil {
			return err
		}
		resp, err := a.do(ctx, "GET", p+"/runs/"+url.PathEscape(args[1])+"/history?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		cols := []column{field("step", "step")}
		if *metric != "" {
			cols = append(cols, field(*metric, "value"))
		} else {
			var rows []map[string]any
			_ = json.Unmarshal(resp.body, &rows)
			seen := map[string]bool{}
			var names []string
			for _, r := range rows {
				vals, _ := r["values"].(map[string]any)
				for k := range vals {
					if !seen[k] {
						seen[k] = true
						names = append(names, k)
					}
				}
			}
			sort.Strings(names)
			for _, n := range names {
				cols = append(cols, column{n, func(m map[string]any) string {
					vals, _ := m["values"].(map[string]any)
					return text(vals[n])
				}})
			}
		}
		return show(e, resp.body, view{columns: cols, quiet: "step"})
	}
}

// export streams a run's whole history to stdout or a file.
func export(fs *flag.FlagSet) Action {
	format := fs.String("format", "csv", "csv (step,time,<metric>...) or ndjson ({step,time,values} a line)")
	metrics := fs.String("metrics", "", "only these metrics, comma separated")
	minStep := fs.Int64("min-step", 0, "from this step")
	output := fs.String("output", "", "write to this file instead of stdout")
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		if *format != "csv" && *format != "ndjson" {
			return UsageError{fmt.Sprintf("-format %q: use csv or ndjson", *format)}
		}
		q := url.Values{"format": {*format}}
		if *metrics != "" {
			q.Set("metrics", *metrics)
		}
		if *minStep > 0 {
			q.Set("min_step", strconv.FormatInt(*minStep, 10))
		}
		a, err := newAPI()
		if err != nil {
			return err
		}
		resp, err := a.open(ctx, "GET", p+"/runs/"+url.PathEscape(args[1])+"/export?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if *output == "" {
			if n, err := io.Copy(e.Out, resp.Body); err != nil {
				return fmt.Errorf("export stopped after %d bytes: %w", n, err)
			}
			return nil
		}
		f, err := os.Create(*output)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("export to %s stopped after %d bytes: %w", *output, n, err)
		}
		fmt.Fprintf(e.Err, "wrote %d bytes to %s\n", n, *output)
		return nil
	}
}
