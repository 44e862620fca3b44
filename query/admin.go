package query

import "github.com/logbook/logbook/projections"

// ReadModelStatus is a projector's answer to an admin request.
type ReadModelStatus struct {
	ID     string                  `json:"id"`
	Dir    string                  `json:"dir"`
	Seq    uint64                  `json:"seq"`
	Digest *projections.DigestInfo `json:"digest,omitempty"`
	Verify *Verification           `json:"verify,omitempty"`
	Error  string                  `json:"error,omitempty"`
}

// AdminRequest is the body of an admin request.
type AdminRequest struct {
	ID string `json:"id,omitempty"` // only this projector answers; "" for all
}

// Status is the live read model's directory and sequence (cheap).
func (p *ReadModel) Status() ReadModelStatus {
	g := p.cur.Load()
	st := ReadModelStatus{ID: p.ID, Dir: g.dir, Seq: g.store.Seq()}
	if err := p.Stalled(); err != nil {
		st.Error = err.Error()
	}
	return st
}

// User looks a user up by key hash in the live read model.
func (p *ReadModel) User(keyHash string) (u projections.User, err error) {
	p.view(func(g *generation) { u, err = g.store.UserByKeyHash(keyHash) })
	return u, err
}
