package wandb

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/logbook/logbook/query"
)

// runFiles answers RunFiles (Python's Api().run(path).files(), and
// wandb.restore): the run's uploaded files, paged by name. Each file's url
// is the native download route, which the clients GET with their API key
// (Basic auth); directUrl is the same URL.
func (s *Server) runFiles(r *http.Request, c *caller, v vars) (any, error) {
	entity, _, _ := v.str("entity")
	project, _, _ := v.str("project")
	run, _, err := v.str("name")
	if err != nil {
		return nil, gqlErrorf("invalid", "%v", err)
	}
	if entity, project, run, err = names(c, entity, project, run); err != nil {
		return nil, err
	}
	cursor, _, _ := v.str("fileCursor")
	names, _, err := v.strs("fileNames")
	if err != nil {
		return nil, gqlErrorf("invalid", "%v", err)
	}
	pattern, _, _ := v.str("pattern")
	limit := 50
	if raw, ok := v["fileLimit"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &limit); err != nil || limit < 1 {
			return nil, gqlErrorf("invalid", "variable $fileLimit must be a positive integer")
		}
		limit = min(limit, 10000)
	}
	project0 := map[string]any{"id": gid("Project", entity+"/"+project), "internalId": gid("Project", entity+"/"+project), "name": project, "run": nil}
	files, err := (&query.RunFiles{Reader: s.reader, Store: s.files}).List(r.Context(), c.keyHash, entity, project, run)
	if err != nil {
		if st, _ := statusOf(err); st == 404 {
			return map[string]any{"project": project0}, nil // W&B answers run: null
		}
		return nil, err
	}
	like := likePattern(pattern)
	var selected []query.FileInfo
	for _, f := range files {
		if (len(names) == 0 || slices.Contains(names, f.Name)) && (like == nil || like.MatchString(f.Name)) {
			selected = append(selected, f)
		}
	}
	start := 0
	if cursor != "" {
		start = len(selected)
		for i, f := range selected {
			if f.Name > cursor {
				start = i
				break
			}
		}
	}
	page := selected[start:min(len(selected), start+limit)]
	edges := make([]any, len(page))
	base := baseURL(r) + "/api/v1/projects/" + url.PathEscape(entity) + "/" + url.PathEscape(project) + "/runs/" + url.PathEscape(run) + "/files/"
	for i, f := range page {
		u := base + escapeFilePath(f.Name)
		var md5 any
		if f.MD5 != "" {
			md5 = f.MD5
		}
		edges[i] = map[string]any{"cursor": f.Name, "node": map[string]any{
			"id": gid("File", entity+"/"+project+"/"+run+"/"+f.Name), "name": f.Name, "url": u, "directUrl": u,
			"sizeBytes": f.Size, "mimetype": mimeOf(f.Name), "updatedAt": f.Updated.Format("2006-01-02T15:04:05"), "md5": md5,
		}}
	}
	var end any
	if len(page) > 0 {
		end = page[len(page)-1].Name
	}
	project0["run"] = map[string]any{"fileCount": len(selected), "files": map[string]any{
		"edges": edges, "pageInfo": map[string]any{"endCursor": end, "hasNextPage": start+len(page) < len(selected)}}}
	return map[string]any{"project": project0}, nil
}

// escapeFilePath escapes each part of a file's path for a URL.
func escapeFilePath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// likePattern turns W&B's file pattern (SQL LIKE: % any run, _ one
// character) into a regexp; "" is none.
func likePattern(p string) *regexp.Regexp {
	if p == "" {
		return nil
	}
	var b strings.Builder
	b.WriteString("^")
	for _, r := range p {
		switch r {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func mimeOf(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}
