package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/logbook/logbook/events"
)

// Checks of proposed values: the run fields, configs, output lines and
// metric rows.

func validateRunFields(pl events.RunStartedV1) error {
	if err := events.ValidateRunID(pl.RunID); err != nil {
		return err
	}
	if pl.Name != "" {
		if err := events.ValidateRunName(pl.Name); err != nil {
			return err
		}
	}
	if len(pl.JobType) > events.MaxNameLen || len(pl.Group) > events.MaxRunNameLen {
		return fmt.Errorf("job_type must be at most %d and group at most %d characters", events.MaxNameLen, events.MaxRunNameLen)
	}
	if len(pl.Notes) > events.MaxNotesLen {
		return fmt.Errorf("notes must be at most %d characters", events.MaxNotesLen)
	}
	if err := events.ValidateLabel("group", pl.Group, events.MaxRunNameLen); err != nil {
		return err
	}
	if err := events.ValidateLabel("job_type", pl.JobType, events.MaxNameLen); err != nil {
		return err
	}
	if len(pl.Tags) > events.MaxTags {
		return fmt.Errorf("a run may have at most %d tags (got %d)", events.MaxTags, len(pl.Tags))
	}
	for _, t := range pl.Tags {
		if err := events.ValidateTag(t); err != nil {
			return err
		}
	}
	if err := ValidateConfig(pl.Wandb); err != nil {
		return fmt.Errorf("W&B client data: %v", err)
	}
	return ValidateConfig(pl.Config)
}

// ValidateConfig checks that a run config is a JSON object within the size
// and depth limits.
func ValidateConfig(c json.RawMessage) error {
	if len(c) == 0 {
		return nil
	}
	if len(c) > events.MaxConfigBytes {
		return fmt.Errorf("config is %d bytes; the limit is %d", len(c), events.MaxConfigBytes)
	}
	if t := bytes.TrimSpace(c); len(t) == 0 || t[0] != '{' {
		return errors.New("config must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(c))
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("config is not valid JSON: %v", err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
				if depth > events.MaxConfigDepth {
					return fmt.Errorf("config is nested deeper than %d levels", events.MaxConfigDepth)
				}
			} else {
				depth--
			}
		}
	}
	return nil
}

// Limits on written lines (console output, system-metric records).
const (
	MaxLinesPerWrite = 10000
	MaxLineBytes     = 1 << 20
	MaxFileNameLen   = 128
	MaxLineNumber    = 1 << 40
)

func validateLines(pl events.RunLinesWrittenV1) error {
	if pl.File == "" || len(pl.File) > MaxFileNameLen || strings.ContainsAny(pl.File, "\x00\n\r") {
		return fmt.Errorf("file name must be 1 to %d characters without line breaks", MaxFileNameLen)
	}
	if len(pl.Lines) == 0 || len(pl.Lines) > MaxLinesPerWrite {
		return fmt.Errorf("a write carries 1 to %d lines (got %d)", MaxLinesPerWrite, len(pl.Lines))
	}
	if pl.Offset < 0 || pl.Offset+int64(len(pl.Lines)) > MaxLineNumber {
		return fmt.Errorf("line offset must be from 0 to %d (got %d)", MaxLineNumber, pl.Offset)
	}
	for i, l := range pl.Lines {
		if len(l) > MaxLineBytes {
			return fmt.Errorf("line %d is %d bytes; the limit is %d", pl.Offset+int64(i), len(l), MaxLineBytes)
		}
	}
	return nil
}

// checkBatch checks what the columns' structure does not: sizes, the step
// range and the metric keys. The cost is per row and per key, never per
// value, except for batches of sparse columns (a row without values) or
// more keys than a row may hold, whose rows are counted.
func checkBatch(pl events.MetricsLoggedV2) error {
	n := pl.Len()
	if n == 0 {
		return errors.New("a log batch needs at least one row")
	}
	if n > events.MaxRowsPerBatch {
		return fmt.Errorf("a log batch may carry at most %d rows (got %d)", events.MaxRowsPerBatch, n)
	}
	// Steps increase (the decoder checked), so the first and last bound them.
	if err := events.ValidateStep(pl.First()); err != nil {
		return fmt.Errorf("row 0: %v", err)
	}
	if err := events.ValidateStep(pl.Last()); err != nil {
		return fmt.Errorf("row %d: %v", n-1, err)
	}
	for _, k := range pl.Keys() {
		if err := events.ValidateMetricKey(k); err != nil {
			return err
		}
	}
	if pl.Dense() && len(pl.Keys()) <= events.MaxMetricsPerRow {
		return nil
	}
	return checkRowWidths(pl)
}

// checkRowWidths: every row has 1 to MaxMetricsPerRow values.
func checkRowWidths(pl events.MetricsLoggedV2) error {
	for i, w := range pl.RowWidths(nil) {
		if w == 0 {
			return fmt.Errorf("row %d has no values", i)
		}
		if w > events.MaxMetricsPerRow {
			return fmt.Errorf("row %d has %d metrics; the limit is %d", i, w, events.MaxMetricsPerRow)
		}
	}
	return nil
}
