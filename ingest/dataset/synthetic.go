package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/streamrec/streamrec"
)

// SyntheticConfig shapes the synthetic generator. Zero fields take the
// defaults of DefaultSyntheticConfig.
type SyntheticConfig struct {
	Users, Items, Events int
	Seed                 uint64
	// Clusters is the number of latent taste clusters users belong to.
	Clusters int
	// Categories is how many item categories are used (at most 12).
	Categories int
	// Start and Span place the events in time.
	Start time.Time
	Span  time.Duration
	// ExplicitShare is the fraction of events that are ratings; the rest are
	// views, carts and purchases.
	ExplicitShare float64
	// TasteShare is the probability that an event's item is drawn from the
	// user's cluster taste rather than from global popularity.
	TasteShare float64
	// ZipfS is the exponent of item popularity (weight ∝ 1/rank^s).
	ZipfS float64
}

// DefaultSyntheticConfig is the spec "synthetic:" with no keys.
func DefaultSyntheticConfig() SyntheticConfig {
	return SyntheticConfig{
		Users: 1000, Items: 2000, Events: 200000, Seed: 1,
		Clusters: 8, Categories: len(synthCategories),
		Start:         time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		Span:          30 * 24 * time.Hour,
		ExplicitShare: 0.3, TasteShare: 0.75, ZipfS: 1.0,
	}
}

// DemoConfig is the data set `streamrec run` feeds its demo producer:
// smaller than the default so that the first recommendations are there
// within seconds. The demo publishes it with produce.Options{Retime: true,
// Loop: true, Rate: 200}, so event times follow the wall clock.
func DemoConfig() SyntheticConfig {
	c := DefaultSyntheticConfig()
	c.Users, c.Items, c.Events = 500, 1000, 50000
	return c
}

func (c *SyntheticConfig) withDefaults() {
	d := DefaultSyntheticConfig()
	if c.Users == 0 {
		c.Users = d.Users
	}
	if c.Items == 0 {
		c.Items = d.Items
	}
	if c.Events == 0 {
		c.Events = d.Events
	}
	if c.Clusters == 0 {
		c.Clusters = d.Clusters
	}
	if c.Categories == 0 {
		c.Categories = d.Categories
	}
	if c.Start.IsZero() {
		c.Start = d.Start
	}
	if c.Span == 0 {
		c.Span = d.Span
	}
	if c.ExplicitShare == 0 {
		c.ExplicitShare = d.ExplicitShare
	}
	if c.TasteShare == 0 {
		c.TasteShare = d.TasteShare
	}
	if c.ZipfS == 0 {
		c.ZipfS = d.ZipfS
	}
}

// Validate checks the configuration (after defaults are applied).
func (c SyntheticConfig) Validate() error {
	c.withDefaults()
	var errs []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	check(c.Users > 0 && c.Users <= 10_000_000, "users must be 1–10000000, got %d", c.Users)
	check(c.Items > 0 && c.Items <= 10_000_000, "items must be 1–10000000, got %d", c.Items)
	check(c.Events > 0 && c.Events <= 100_000_000, "events must be 1–100000000, got %d", c.Events)
	check(c.Clusters > 0 && c.Clusters <= 1000, "clusters must be 1–1000, got %d", c.Clusters)
	check(c.Categories > 0 && c.Categories <= len(synthCategories), "categories must be 1–%d, got %d", len(synthCategories), c.Categories)
	check(c.Span > 0, "span must be positive")
	check(c.ExplicitShare >= 0 && c.ExplicitShare <= 1, "explicit share must be in [0, 1]")
	check(c.TasteShare >= 0 && c.TasteShare <= 1, "taste share must be in [0, 1]")
	check(c.ZipfS >= 0 && c.ZipfS <= 5, "zipf exponent must be in [0, 5]")
	if len(errs) > 0 {
		return fmt.Errorf("%w: synthetic: %s", ErrSpec, strings.Join(errs, "; "))
	}
	return nil
}

// String is the spec argument that ParseSynthetic reads back.
func (c SyntheticConfig) String() string {
	c.withDefaults()
	d := DefaultSyntheticConfig()
	s := fmt.Sprintf("users=%d,items=%d,events=%d,seed=%d", c.Users, c.Items, c.Events, c.Seed)
	if c.Clusters != d.Clusters {
		s += fmt.Sprintf(",clusters=%d", c.Clusters)
	}
	if c.Categories != d.Categories {
		s += fmt.Sprintf(",categories=%d", c.Categories)
	}
	if c.Span != d.Span {
		s += fmt.Sprintf(",days=%g", c.Span.Hours()/24)
	}
	if c.ExplicitShare != d.ExplicitShare {
		s += fmt.Sprintf(",explicit=%g", c.ExplicitShare)
	}
	if c.TasteShare != d.TasteShare {
		s += fmt.Sprintf(",taste=%g", c.TasteShare)
	}
	if c.ZipfS != d.ZipfS {
		s += fmt.Sprintf(",zipf=%g", c.ZipfS)
	}
	return s
}

// ParseSynthetic reads "users=1000,items=2000,events=200000,seed=1" (every
// key optional; also clusters, categories, days, explicit, taste, zipf).
func ParseSynthetic(arg string) (SyntheticConfig, error) {
	c := DefaultSyntheticConfig()
	for _, kv := range strings.Split(arg, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("%w: synthetic %q: want key=value, got %q", ErrSpec, arg, kv)
		}
		var err error
		switch k {
		case "users":
			c.Users, err = strconv.Atoi(v)
		case "items":
			c.Items, err = strconv.Atoi(v)
		case "events":
			c.Events, err = strconv.Atoi(v)
		case "seed":
			c.Seed, err = strconv.ParseUint(v, 10, 64)
		case "clusters":
			c.Clusters, err = strconv.Atoi(v)
		case "categories":
			c.Categories, err = strconv.Atoi(v)
		case "days":
			var f float64
			if f, err = strconv.ParseFloat(v, 64); err == nil {
				if !(f > 0 && f < 100000) {
					err = fmt.Errorf("out of range")
				}
				c.Span = time.Duration(f * 24 * float64(time.Hour))
			}
		case "explicit":
			c.ExplicitShare, err = strconv.ParseFloat(v, 64)
		case "taste":
			c.TasteShare, err = strconv.ParseFloat(v, 64)
		case "zipf":
			c.ZipfS, err = strconv.ParseFloat(v, 64)
		default:
			return c, fmt.Errorf("%w: synthetic: unknown key %q (want users, items, events, seed, clusters, categories, days, explicit, taste, zipf)", ErrSpec, k)
		}
		if err != nil {
			return c, fmt.Errorf("%w: synthetic: %s=%q: %v", ErrSpec, k, v, err)
		}
	}
	// Zero means "default" in the struct but not in the spec.
	if c.Users <= 0 || c.Items <= 0 || c.Events <= 0 || c.Clusters <= 0 || c.Categories <= 0 {
		return c, fmt.Errorf("%w: synthetic %q: users, items, events, clusters and categories must be positive", ErrSpec, arg)
	}
	return c, c.Validate()
}

// Truth is the structure the generator planted, for tests that check a
// model recovers it.
type Truth struct {
	Clusters   int
	Categories []string
	// ClusterCategories are the categories each cluster prefers.
	ClusterCategories [][]string
	// UserCluster is each user's taste cluster.
	UserCluster map[string]int
	// ItemCategories are each item's categories (1–3).
	ItemCategories map[string][]string
	// ItemAffinity is, per item, each cluster's affinity in [0, 1]: the
	// share of the item's categories the cluster prefers.
	ItemAffinity map[string][]float64
	// ItemPopularity is the item's Zipf weight (the most popular item is 1).
	ItemPopularity map[string]float64
	// Users and Items are the ids in generation order.
	Users, Items []string
}

// Affinity is the planted affinity of user for item (0 when unknown).
func (t *Truth) Affinity(user, item string) float64 {
	c, ok := t.UserCluster[user]
	a := t.ItemAffinity[item]
	if !ok || c >= len(a) {
		return 0
	}
	return a[c]
}

// InTaste says whether the item has a category the user's cluster prefers.
func (t *Truth) InTaste(user, item string) bool { return t.Affinity(user, item) > 0 }

var synthCategories = []string{"Home", "Kitchen", "Garden", "Books", "Music", "Electronics",
	"Toys", "Fashion", "Sports", "Beauty", "Outdoor", "Games"}

var synthProducts = [][]string{
	{"Lamp", "Rug", "Cushion", "Clock", "Vase", "Shelf", "Blanket", "Mirror"},                              // Home
	{"Kettle", "Skillet", "Teapot", "Knife", "Blender", "Mug", "Grinder", "Pan"},                           // Kitchen
	{"Planter", "Trowel", "Hose", "Seed Kit", "Birdhouse", "Lantern", "Pruner", "Bench"},                   // Garden
	{"Novel", "Atlas", "Cookbook", "Almanac", "Memoir", "Anthology", "Journal", "Field Guide"},             // Books
	{"Vinyl", "Ukulele", "Headphones", "Songbook", "Drum", "Harmonica", "Speaker", "Album"},                // Music
	{"Charger", "Radio", "Tablet", "Camera", "Keyboard", "Drone", "Earbuds", "Monitor"},                    // Electronics
	{"Puzzle", "Robot", "Kite", "Yo-yo", "Train Set", "Plush Fox", "Blocks", "Marbles"},                    // Toys
	{"Scarf", "Jacket", "Sneakers", "Hat", "Tote", "Sweater", "Boots", "Gloves"},                           // Fashion
	{"Racket", "Yoga Mat", "Dumbbell", "Bicycle", "Helmet", "Jersey", "Ball", "Skates"},                    // Sports
	{"Serum", "Soap", "Perfume", "Balm", "Lotion", "Brush", "Candle", "Bath Salts"},                        // Beauty
	{"Tent", "Backpack", "Compass", "Hammock", "Flask", "Stove", "Canoe Paddle", "Headlamp"},               // Outdoor
	{"Board Game", "Card Deck", "Chess Set", "Dice Tower", "Game Pad", "Quiz Box", "Tiles", "Meeple Pack"}, // Games
}

var synthAdjectives = []string{"Velvet", "Amber", "Copper", "Quiet", "Golden", "Silver", "Rustic",
	"Crimson", "Misty", "Bright", "Cedar", "Lunar", "Coral", "Indigo", "Maple", "Nimble",
	"Sunny", "Polar", "Wild", "Cozy", "Sable", "Ivory", "Jade", "Saffron"}

var synthNouns = []string{"Harbor", "Meadow", "Summit", "River", "Forest", "Canyon", "Orchard",
	"Prairie", "Lagoon", "Valley", "Glacier", "Island", "Garden", "Harvest", "Comet", "Willow",
	"Falcon", "Pebble", "Ember", "Breeze"}

// Synthetic generates a data set with planted structure: items with
// readable names and 1–3 categories, Zipf popularity, users in latent taste
// clusters that prefer some categories, ratings (0.5–5 in half steps, higher
// for in-taste items) and views, carts and purchases (more often in taste),
// over Span from Start. The same configuration gives identical data.
func Synthetic(cfg SyntheticConfig) (*Data, *Truth) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		// Clamp rather than fail: the library never panics on input.
		cfg = DemoConfig()
		cfg.Users, cfg.Items, cfg.Events = 10, 10, 10
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	nc := cfg.Categories
	cats := synthCategories[:nc]
	t := &Truth{
		Clusters:       cfg.Clusters,
		Categories:     slices.Clone(cats),
		UserCluster:    make(map[string]int, cfg.Users),
		ItemCategories: make(map[string][]string, cfg.Items),
		ItemAffinity:   make(map[string][]float64, cfg.Items),
		ItemPopularity: make(map[string]float64, cfg.Items),
	}

	// Clusters prefer two (or, with few categories, one) categories each,
	// walking a shuffled category order so that preferences spread out.
	order := rng.Perm(nc)
	per := 2
	if nc < 4 {
		per = 1
	}
	prefers := make([][]bool, cfg.Clusters)
	t.ClusterCategories = make([][]string, cfg.Clusters)
	for c := range prefers {
		prefers[c] = make([]bool, nc)
		for k := range per {
			cat := order[(c*per+k)%nc]
			if !prefers[c][cat] {
				prefers[c][cat] = true
				t.ClusterCategories[c] = append(t.ClusterCategories[c], cats[cat])
			}
		}
	}

	// Items: categories, names, popularity, quality, per-cluster affinity.
	d := &Data{Items: make([]streamrec.ItemMeta, cfg.Items)}
	itemIDs := make([]string, cfg.Items)
	affinity := make([][]float64, cfg.Items) // item × cluster
	quality := make([]float64, cfg.Items)
	pop := make([]float64, cfg.Items)
	rank := rng.Perm(cfg.Items)
	for i := range cfg.Items {
		id := "i" + strconv.Itoa(i+1)
		itemIDs[i] = id
		n := 1 + rng.IntN(3)
		if n > nc {
			n = nc
		}
		ic := make([]int, 0, n)
		ic = append(ic, rng.IntN(nc))
		for len(ic) < n {
			if c := rng.IntN(nc); !slices.Contains(ic, c) {
				ic = append(ic, c)
			}
		}
		names := make([]string, len(ic))
		for k, c := range ic {
			names[k] = cats[c]
		}
		products := synthProducts[ic[0]]
		title := synthAdjectives[rng.IntN(len(synthAdjectives))] + " " +
			synthNouns[rng.IntN(len(synthNouns))] + " " + products[rng.IntN(len(products))]
		d.Items[i] = streamrec.ItemMeta{Item: id, Title: title, Categories: names}
		affinity[i] = make([]float64, cfg.Clusters)
		for c := range cfg.Clusters {
			hit := 0
			for _, k := range ic {
				if prefers[c][k] {
					hit++
				}
			}
			affinity[i][c] = float64(hit) / float64(len(ic))
		}
		quality[i] = rng.NormFloat64() * 0.3
		pop[i] = 1 / math.Pow(float64(rank[i]+1), cfg.ZipfS)
		t.ItemCategories[id] = names
		t.ItemAffinity[id] = affinity[i]
		t.ItemPopularity[id] = pop[i]
	}
	t.Items = itemIDs

	// Users: cluster, activity (log-normal), rating bias.
	userIDs := make([]string, cfg.Users)
	cluster := make([]int, cfg.Users)
	activity := make([]float64, cfg.Users)
	ubias := make([]float64, cfg.Users)
	for u := range cfg.Users {
		userIDs[u] = "u" + strconv.Itoa(u+1)
		cluster[u] = rng.IntN(cfg.Clusters)
		activity[u] = math.Exp(rng.NormFloat64() * 0.8)
		ubias[u] = rng.NormFloat64() * 0.25
		t.UserCluster[userIDs[u]] = cluster[u]
	}
	t.Users = userIDs

	userCum := cumulative(activity, nil)
	globalCum := cumulative(pop, nil)
	clusterCum := make([][]float64, cfg.Clusters)
	w := make([]float64, cfg.Items)
	for c := range cfg.Clusters {
		for i := range w {
			w[i] = pop[i] * affinity[i][c]
		}
		clusterCum[c] = cumulative(w, nil)
	}

	// Times: uniform days, evening-heavy hours; sorted, then handed out in
	// generation order (events are independent, so this is the same law).
	times := make([]int64, cfg.Events)
	spanMs := cfg.Span.Milliseconds()
	startMs := cfg.Start.UnixMilli()
	for k := range times {
		off := rng.Int64N(spanMs)
		// Thin out night hours: redraw once with probability 0.6.
		if h := (off / 3_600_000) % 24; h < 6 && rng.Float64() < 0.6 {
			off = rng.Int64N(spanMs)
		}
		times[k] = startMs + off/1000*1000
	}
	slices.Sort(times)

	rated := make(map[uint64]struct{}, int(float64(cfg.Events)*cfg.ExplicitShare))
	d.Events = make([]streamrec.Event, 0, cfg.Events)
	types := streamrec.DefaultEventTypes()
	for k := range cfg.Events {
		u := pick(userCum, rng.Float64())
		c := cluster[u]
		var it int
		if rng.Float64() < cfg.TasteShare && clusterCum[c][len(clusterCum[c])-1] > 0 {
			it = pick(clusterCum[c], rng.Float64())
		} else {
			it = pick(globalCum, rng.Float64())
		}
		aff := affinity[it][c]
		e := streamrec.Event{User: userIDs[u], Item: itemIDs[it], TS: times[k]}
		typ := "view"
		pair := uint64(u)<<32 | uint64(it)
		if rng.Float64() < cfg.ExplicitShare {
			if _, dup := rated[pair]; !dup {
				rated[pair] = struct{}{}
				typ = "rating"
				v := 2.4 + 2.0*aff + quality[it] + ubias[u] + rng.NormFloat64()*0.5
				e.Value = math.Min(5, math.Max(0.5, math.Round(v*2)/2))
			}
		}
		if typ == "view" {
			r := rng.Float64()
			switch {
			case r < 0.02+0.06*aff:
				typ = "purchase"
			case r < 0.06+0.14*aff:
				typ = "cart"
			}
		}
		et := types[typ]
		e.Type, e.Kind, e.Weight = typ, et.Kind, et.Weight
		if et.Kind == streamrec.Explicit {
			e.Weight = 1
		}
		d.Events = append(d.Events, e)
	}
	d.Name = "synthetic:" + cfg.String()
	d.finish(&Options{})
	return d, t
}

// cumulative returns the running sums of w.
func cumulative(w, dst []float64) []float64 {
	dst = dst[:0]
	s := 0.0
	for _, x := range w {
		s += x
		dst = append(dst, s)
	}
	return dst
}

// pick draws an index from running sums with a uniform u in [0, 1).
func pick(cum []float64, u float64) int {
	i := sort.SearchFloat64s(cum, u*cum[len(cum)-1])
	// Skip zero-weight entries that share the running sum.
	for i < len(cum)-1 && (i > 0 && cum[i] == cum[i-1] || i == 0 && cum[0] == 0) {
		i++
	}
	return min(i, len(cum)-1)
}
