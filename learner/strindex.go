package learner

// strIndex interns string ids as dense int32 indexes, so models keep flat
// slices instead of maps of structs.
type strIndex struct {
	ids   map[string]int32
	names []string
}

func newStrIndex() strIndex { return strIndex{ids: map[string]int32{}} }

func (x *strIndex) len() int { return len(x.names) }

func (x *strIndex) get(s string) (int32, bool) {
	i, ok := x.ids[s]
	return i, ok
}

// add returns s's index, adding it when new (added reports that).
func (x *strIndex) add(s string) (i int32, added bool) {
	if i, ok := x.ids[s]; ok {
		return i, false
	}
	i = int32(len(x.names))
	x.ids[s] = i
	x.names = append(x.names, s)
	return i, true
}

func (x *strIndex) encode(e *wbuf) { e.strs(x.names) }

func (x *strIndex) decode(d *rbuf) {
	x.names = d.strs()
	x.ids = make(map[string]int32, len(x.names))
	for i, n := range x.names {
		x.ids[n] = int32(i)
	}
	if len(x.ids) != len(x.names) {
		d.fail("strIndex (duplicate ids)")
	}
}

// itemCatalog is the per-item category table a model keeps for category filters.
type itemCatalog struct {
	cats     strIndex
	itemCats [][]int32 // by item index
}

func newItemCatalog() itemCatalog { return itemCatalog{cats: newStrIndex()} }

// grow makes room for item index i.
func (c *itemCatalog) grow(n int) {
	for len(c.itemCats) < n {
		c.itemCats = append(c.itemCats, nil)
	}
}

// set records item i's categories when it has none yet or they changed in
// number (cheap check; metadata changes are rare).
func (c *itemCatalog) set(i int32, cats []string) {
	c.grow(int(i) + 1)
	if len(cats) == 0 || len(c.itemCats[i]) == len(cats) {
		return
	}
	ids := make([]int32, len(cats))
	for k, name := range cats {
		ids[k], _ = c.cats.add(name)
	}
	c.itemCats[i] = ids
}

// in reports whether item i has category cat (cat < 0: the category is unknown).
func (c *itemCatalog) in(i int32, cat int32) bool {
	if int(i) >= len(c.itemCats) {
		return false
	}
	for _, x := range c.itemCats[i] {
		if x == cat {
			return true
		}
	}
	return false
}

// category resolves a filter: ok=false means the category exists nowhere.
func (c *itemCatalog) category(name string) (int32, bool) {
	return c.cats.get(name)
}

func (c *itemCatalog) encode(e *wbuf) {
	c.cats.encode(e)
	e.u64(uint64(len(c.itemCats)))
	for _, ids := range c.itemCats {
		e.u32(uint32(len(ids)))
		for _, x := range ids {
			e.u32(uint32(x))
		}
	}
}

func (c *itemCatalog) decode(d *rbuf) {
	c.cats.decode(d)
	n := d.count(4, "itemCatalog")
	c.itemCats = make([][]int32, n)
	for i := range c.itemCats {
		m := d.u32()
		if !d.need(uint64(m)*4, "itemCatalog entry") {
			return
		}
		if m == 0 {
			continue
		}
		ids := make([]int32, m)
		for k := range ids {
			ids[k] = int32(d.u32())
			if int(ids[k]) >= c.cats.len() || ids[k] < 0 {
				d.fail("itemCatalog category id")
				return
			}
		}
		c.itemCats[i] = ids
	}
}

// itemLink maps the item indexes of another model's name table to this
// model's (-1: unknown here), built once for immutable snapshots so the
// serving path translates candidates without hashing their names.
type itemLink struct {
	names []string // the table idx was built for (identity-checked)
	idx   []int32
}

// build links names to x.
func (l *itemLink) build(names []string, x *strIndex) {
	l.names = names
	l.idx = make([]int32, len(names))
	for i, n := range names {
		j, ok := x.get(n)
		if !ok {
			j = -1
		}
		l.idx[i] = j
	}
}

// get resolves names[i] in x, through the link when it was built for this
// very table (same backing array and length), else by hashing the name.
func (l *itemLink) get(names []string, i int32, x *strIndex) (int32, bool) {
	if len(names) > 0 && len(l.idx) == len(names) && &l.names[0] == &names[0] {
		j := l.idx[i]
		return j, j >= 0
	}
	return x.get(names[i])
}
