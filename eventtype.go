package streamrec

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// EventType is how one event type is learned from.
type EventType struct {
	Kind   Kind
	Weight float64
}

// EventTypes maps event type names to their kind and weight.
type EventTypes map[string]EventType

// DefaultEventTypes returns the types of product.md §2.
func DefaultEventTypes() EventTypes {
	return EventTypes{
		"rating":      {Explicit, 1},
		"view":        {Implicit, 1},
		"click":       {Implicit, 1},
		"pv":          {Implicit, 1},
		"like":        {Implicit, 2},
		"fav":         {Implicit, 2},
		"cart":        {Implicit, 2},
		"add_to_cart": {Implicit, 2},
		"purchase":    {Implicit, 4},
		"buy":         {Implicit, 4},
	}
}

// Set parses "NAME=implicit:WEIGHT" or "NAME=explicit" and adds or replaces
// that type. It is the value of the --event-type flag.
func (t EventTypes) Set(spec string) error {
	name, def, ok := strings.Cut(spec, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return fmt.Errorf("event type %q: want NAME=implicit:WEIGHT or NAME=explicit", spec)
	}
	kind, weight, _ := strings.Cut(strings.TrimSpace(def), ":")
	switch kind {
	case "explicit":
		if weight != "" {
			return fmt.Errorf("event type %q: explicit types take no weight", spec)
		}
		t[name] = EventType{Explicit, 1}
	case "implicit":
		w := 1.0
		if weight != "" {
			var err error
			w, err = strconv.ParseFloat(weight, 64)
			if err != nil || w <= 0 || math.IsInf(w, 0) || math.IsNaN(w) {
				return fmt.Errorf("event type %q: weight must be a positive number", spec)
			}
		}
		t[name] = EventType{Implicit, w}
	default:
		return fmt.Errorf("event type %q: kind must be implicit or explicit", spec)
	}
	return nil
}

// String lists the types in a stable order, in the syntax Set accepts.
func (t EventTypes) String() string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		et := t[n]
		if et.Kind == Explicit {
			fmt.Fprintf(&b, "%s=explicit", n)
		} else {
			fmt.Fprintf(&b, "%s=implicit:%g", n, et.Weight)
		}
	}
	return b.String()
}
