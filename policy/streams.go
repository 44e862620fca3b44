package policy

import "github.com/logbook/logbook/events"

// decideStreamReceived records which lines of a run's W&B history stream
// arrived. A chunk that neither advances the stream nor fills a gap (a
// retried request) records nothing.
func decideStreamReceived(pr *proposal, pl events.RunStreamReceivedV1) Decision {
	run := pr.run
	if pl.File == "" || len(pl.File) > MaxFileNameLen || pl.Offset < 0 || pl.Count < 1 || pl.Count > MaxLinesPerWrite ||
		pl.Offset+pl.Count > MaxLineNumber || pl.FirstStep < -1 {
		return reject(CodeInvalid, "a stream record needs a file, an offset from 0, 1 to %d lines and a first step from -1", MaxLinesPerWrite)
	}
	if !run.open() {
		return reject(CodeRunFinished, "run %q is %s; it no longer accepts metrics (resume it to log more)", run.ID, run.State)
	}
	end := pl.Offset + pl.Count
	fills := false
	for _, g := range run.HistoryGaps {
		if pl.Offset <= g.LastLine && end > g.FirstLine {
			fills = true
			break
		}
	}
	if end <= run.HistoryLines && !fills {
		return accept()
	}
	return accept(pr.in(pl))
}
