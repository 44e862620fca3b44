package policy

import (
	"testing"

	"github.com/logbook/logbook/events"
)

// TestRulesAgreeWithPermissions: every registered event type that a user
// may propose (its action in ProposalAction is not Derived) has one rule in
// the decide table, registered under its own type; the types only the
// policy produces have none; and each rule's gate fits its action: writes
// to a run (and the crash only the system may propose) pass the run gate,
// other project actions the project gate, actions on entities, users and
// the site no gate.
func TestRulesAgreeWithPermissions(t *testing.T) {
	registered := map[events.Type]bool{}
	for _, typ := range events.Types() {
		registered[typ] = true
		act, ok := ActionOf(typ)
		if !ok {
			t.Errorf("%s: no row in ProposalAction", typ)
			continue
		}
		r, has := rules[typ]
		switch {
		case act == Derived && has:
			t.Errorf("%s: only the policy produces it, but it has a rule", typ)
		case act == Derived:
		case !has:
			t.Errorf("%s: users may propose it (%s) but it has no rule", typ, act)
		case r.gate != gateFor(t, act):
			t.Errorf("%s: rule behind gate %d, but its action %q needs gate %d", typ, r.gate, act, gateFor(t, act))
		}
	}
	for typ, r := range rules {
		if !registered[typ] {
			t.Errorf("rule for %s, which the events registry does not know", typ)
		}
		if r.typ != typ {
			t.Errorf("the rule registered for %s takes %s payloads", typ, r.typ)
		}
	}
}

func gateFor(t *testing.T, a Action) gate {
	switch {
	case a == WriteOwnRun || a == SystemOnly:
		return runGate
	case PermissionMustOf(t, a).Scope == ScopeProject:
		return projectGate
	}
	return noGate
}
