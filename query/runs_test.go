package query

import (
	"slices"
	"testing"
)

// The web UI's table asks for a name search, a sort by any column and only
// the columns it shows.
func TestParseRunQuerySearchSortFields(t *testing.T) {
	q, err := ParseRunQuery("search=my%20run&sort=-config.optimizer.lr&fields=config.lr,summary.val%2Floss&fields=metrics&limit=20")
	if err != nil {
		t.Fatal(err)
	}
	if q.Search != "my run" || q.Sort != "config.optimizer.lr" || !q.Desc || q.Limit != 20 ||
		!slices.Equal(q.Fields, []string{"config.lr", "summary.val/loss", "metrics"}) {
		t.Fatalf("parsed %+v", q)
	}
	for _, s := range []string{"state", "owner", "job_type", "group", "-name"} {
		if _, err := ParseRunQuery("sort=" + s); err != nil {
			t.Errorf("sort=%s: %v", s, err)
		}
	}
	if _, err := ParseRunQuery("sort=tags"); err == nil {
		t.Error("sort=tags parsed")
	}
}
