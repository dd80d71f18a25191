package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/streamrec/streamrec"
)

// ml100kGenres is the order of u.genre, used when the file is absent.
var ml100kGenres = []string{"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
	"Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
	"Romance", "Sci-Fi", "Thriller", "War", "Western"}

// mlFormat is one MovieLens release layout.
type mlFormat struct {
	ratings, items string
	sep            string
	header         bool
	latin1         bool
}

var mlFormats = []mlFormat{
	{ratings: "u.data", items: "u.item", sep: "\t", latin1: true},          // 100K
	{ratings: "ratings.csv", items: "movies.csv", sep: ",", header: true},  // latest, 20M, 25M
	{ratings: "ratings.dat", items: "movies.dat", sep: "::", latin1: true}, // 1M, 10M
}

func loadMovieLens(ctx context.Context, dir string, o *Options) (*Data, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrSpec, err)
		}
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: movielens wants a directory, %s is a file", ErrSpec, dir)
	}
	for _, f := range mlFormats {
		if _, err := os.Stat(filepath.Join(dir, f.ratings)); err != nil {
			continue
		}
		d := &Data{Name: "movielens:" + baseName(dir)}
		if err := loadMLRatings(ctx, d, dir, f, o); err != nil {
			return nil, err
		}
		if err := loadMLItems(d, dir, f); err != nil {
			return nil, err
		}
		return d, nil
	}
	return nil, fmt.Errorf("%w: %s holds none of u.data, ratings.csv, ratings.dat", ErrSpec, dir)
}

// loadMLRatings reads user, item, rating, timestamp lines.
func loadMLRatings(ctx context.Context, d *Data, dir string, f mlFormat, o *Options) error {
	path := filepath.Join(dir, f.ratings)
	file, err := openFile(path)
	if err != nil {
		return err
	}
	defer file.Close()
	if st, err := file.Stat(); err == nil {
		d.Events = make([]streamrec.Event, 0, st.Size()/18) // ~20 bytes a line
	}
	typ := "rating"
	if o.TypeDefault != "" {
		typ = o.TypeDefault
	}
	b := newEventBuilder(o)
	lr := newLineReader(file)
	sep := []byte(f.sep)
	fields := make([][]byte, 0, 8)
	name := f.ratings
	for {
		line, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if lr.line&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if (f.header && lr.line == 1) || len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		fields, err = splitFields(fields[:0], line, sep)
		if err != nil {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		if len(fields) < 4 {
			d.reject(lineError(name, lr.line, fmt.Errorf("want 4 fields (user, item, rating, timestamp), got %d", len(fields))))
			continue
		}
		ts, err := parseTS(fields[3])
		if err != nil {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		e, err := b.event(typ, fields[0], fields[1], fields[2], ts)
		if err != nil {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		d.Events = append(d.Events, e)
	}
}

// loadMLItems reads the catalogue when the directory has one.
func loadMLItems(d *Data, dir string, f mlFormat) error {
	path := filepath.Join(dir, f.items)
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	genres := ml100kGenres
	if f.ratings == "u.data" {
		if g, err := readGenres(filepath.Join(dir, "u.genre")); err == nil && len(g) > 0 {
			genres = g
		}
	}
	strs := make(interner, 64)
	lr := newLineReader(file)
	sep := []byte(f.sep)
	if f.ratings == "u.data" {
		sep = []byte("|")
	}
	fields := make([][]byte, 0, 32)
	for {
		line, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, errLineTooLong) {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if err != nil || (f.header && lr.line == 1) || len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if f.ratings == "u.data" {
			// No quoting in u.item: split at every pipe.
			fields = splitPlain(fields[:0], line, '|')
		} else if fields, err = splitFields(fields[:0], line, sep); err != nil {
			continue
		}
		if len(fields) < 2 || len(bytes.TrimSpace(fields[0])) == 0 {
			continue
		}
		m := streamrec.ItemMeta{Item: strs.get(bytes.TrimSpace(fields[0]))}
		if f.latin1 {
			m.Title = latin1(fields[1])
		} else {
			m.Title = string(fields[1])
		}
		switch {
		case f.ratings == "u.data":
			flags := fields[min(5, len(fields)):]
			for i, fl := range flags {
				if i < len(genres) && len(fl) == 1 && fl[0] == '1' && genres[i] != "unknown" {
					m.Categories = append(m.Categories, genres[i])
				}
			}
		case len(fields) >= 3:
			g := fields[2]
			if string(g) == "(no genres listed)" || len(g) == 0 {
				break
			}
			for _, name := range bytes.Split(g, []byte("|")) {
				if len(name) > 0 {
					m.Categories = append(m.Categories, strs.get(name))
				}
			}
		}
		d.Items = append(d.Items, m)
	}
}

func splitPlain(dst [][]byte, line []byte, sep byte) [][]byte {
	for {
		i := bytes.IndexByte(line, sep)
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// readGenres reads u.genre ("name|id" lines) into id order.
func readGenres(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range bytes.Split(b, []byte("\n")) {
		name, id, ok := bytes.Cut(trimEOL(line), []byte("|"))
		if !ok {
			continue
		}
		n, ok := parseFloat(id)
		if !ok || n < 0 || n > 64 {
			continue
		}
		for len(out) <= int(n) {
			out = append(out, "")
		}
		out[int(n)] = latin1(name)
	}
	return out, nil
}
