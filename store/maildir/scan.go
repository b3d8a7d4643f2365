package maildir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// maxNameLen is NAME_MAX on Linux file systems.
const maxNameLen = 255

// dirFile is a regular file found in new/ or cur/.
type dirFile struct {
	sub  string // "new" or "cur"
	name string
}

// listFiles reads new/ and cur/ without stat'ing or opening any message:
// the type comes from the directory entry. Dot files are skipped as the
// Maildir spec asks, and so is anything not a regular file: a symlink in a
// Maildir could otherwise serve any file the server can read.
func listFiles(mb mailbox) ([]dirFile, error) {
	var out []dirFile
	for _, sub := range []string{"new", "cur"} {
		d, err := os.Open(mb.path(sub))
		if err != nil {
			return nil, fmt.Errorf("maildir: scan: %w", err)
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("maildir: scan %s: %w", sub, err)
		}
		if out == nil {
			out = make([]dirFile, 0, len(ents)+16)
		}
		for _, e := range ents {
			n := e.Name()
			if n == "" || n[0] == '.' || !e.Type().IsRegular() {
				continue
			}
			out = append(out, dirFile{sub: sub, name: n})
		}
	}
	return out, nil
}

// findByKey looks for the file that now holds key, after another tool moved
// it from new/ to cur/ or changed its flags.
func findByKey(mb mailbox, key string) (dirFile, bool, error) {
	files, err := listFiles(mb)
	if err != nil {
		return dirFile{}, false, err
	}
	for _, f := range files {
		if parseFileName(f.name).key == key {
			return f, true, nil
		}
	}
	return dirFile{}, false, nil
}

// uidSeen tracks the highest uid seen per epoch, for counter recovery, and
// the lowest epoch, for the import floor.
type uidSeen struct {
	any      bool
	maxEpoch uint32
	minEpoch uint32
	maxUID   map[uint32]uint32
}

func (u *uidSeen) add(uid, epoch uint32) {
	if u.maxUID == nil {
		u.maxUID = make(map[uint32]uint32)
	}
	if !u.any || epoch > u.maxEpoch {
		u.maxEpoch = epoch
	}
	if !u.any || epoch < u.minEpoch {
		u.minEpoch = epoch
	}
	u.any = true
	if uid > u.maxUID[epoch] {
		u.maxUID[epoch] = uid
	}
}

// recoverCounter decides the counter from every source there is: the
// counter file, the index header, and the uids carried by index records and
// file names. The newest epoch any of them mentions wins. If the counter
// file or the index header vouches for that epoch, next is the largest of
// what they say and the highest uid seen plus one. If neither does, the
// highest uid ever handed out in that epoch is unknowable (its message may
// have been deleted), so a new epoch begins instead: older UIDLs all stay
// valid, and none can ever come back.
func recoverCounter(ctr counterState, ctrOK bool, idx indexData, seen uidSeen) (c counterState, fresh bool) {
	have := seen.any
	top := seen.maxEpoch
	consider := func(e uint32) {
		if !have || e > top {
			top = e
		}
		have = true
	}
	if ctrOK {
		consider(ctr.epoch)
	}
	if idx.header {
		consider(idx.epoch)
	}
	var next uint64
	if ctrOK && ctr.epoch == top {
		next = ctr.next
	}
	if idx.header && idx.epoch == top {
		next = max(next, idx.next)
	}
	if next == 0 {
		return counterState{epoch: newEpoch(top, have), next: 1}, true
	}
	if m, ok := seen.maxUID[top]; ok {
		next = max(next, uint64(m)+1)
	}
	return counterState{epoch: top, next: next}, false
}

// lowestEpoch is the import floor when the counter does not record it: the
// lowest epoch anything mentions, which is at or below every epoch popbox
// handed out a uid in that left a trace.
func lowestEpoch(epoch uint32, idx indexData, seen uidSeen) uint32 {
	if idx.header {
		epoch = min(epoch, idx.epoch)
	}
	if seen.any {
		epoch = min(epoch, seen.minEpoch)
	}
	return epoch
}

// floorOf is the import floor for the counter next, recovered from ctr:
// the one ctr records, else (a version-1 or lost counter) the lowest epoch
// anything mentions.
func floorOf(next, ctr counterState, ctrOK bool, idx indexData, seen uidSeen) uint32 {
	switch {
	case ctrOK && ctr.acct:
		return ctr.floor
	case ctrOK:
		return lowestEpoch(min(next.epoch, ctr.epoch), idx, seen)
	}
	return lowestEpoch(next.epoch, idx, seen)
}

// seeTrash adds the uids of deleted messages to seen. Only recovery needs
// them: a sound counter is above them already.
func (s *Store) seeTrash(mb mailbox, seen *uidSeen) error {
	trash, _, err := s.listTrash(mb)
	if err != nil {
		return err
	}
	for _, t := range trash {
		seen.add(t.fn.uid, t.fn.epoch)
	}
	return nil
}

// recoverFromDisk rebuilds the counter when its file is missing or damaged,
// from the index and the names in new/, cur/ and popbox-trash/ (no message
// is read). The totals come from the index records and, for files the
// index lacks, their names; the next Open makes them exact.
func (s *Store) recoverFromDisk(mb mailbox) (counterState, error) {
	idx, _, err := s.readIndex(mb)
	if err != nil {
		return counterState{}, err
	}
	files, err := listFiles(mb)
	if err != nil {
		return counterState{}, err
	}
	var seen uidSeen
	byKey := make(map[string]record, len(idx.recs))
	for _, r := range idx.recs {
		seen.add(r.uid, r.epoch)
		byKey[r.key] = r
	}
	if err := s.seeTrash(mb, &seen); err != nil {
		return counterState{}, err
	}
	var msgs, octets int64
	for _, f := range files {
		fn := parseFileName(f.name)
		if fn.hasFields {
			seen.add(fn.uid, fn.epoch)
		}
		if r, ok := byKey[fn.key]; ok {
			msgs, octets = msgs+1, octets+r.size
		} else if fn.hasFields {
			msgs, octets = msgs+1, octets+fn.size
		}
	}
	c, fresh := recoverCounter(counterState{}, false, idx, seen)
	if fresh && (idx.header || seen.any) { // else: a new, empty mailbox
		s.log.Warn("maildir: UID counter lost, starting a new UIDL epoch", "user", mb.user, "epoch", c.epoch)
	}
	c.floor = lowestEpoch(c.epoch, idx, seen)
	c.msgs, c.bytes, c.acct = msgs, octets, true
	return c, nil
}

// entry is one message of a snapshot.
type entry struct {
	sub   string
	name  string
	key   string
	uid   uint32
	epoch uint32
	size  int64
	lit   string // imported literal UIDL, or ""
}

// uidl is the UIDL POP3 reports for the entry.
func (e *entry) uidl() string {
	if e.lit != "" {
		return e.lit
	}
	return formatUIDL(e.uid, e.epoch)
}

// candidate is a file during reconcile.
type candidate struct {
	entry
	fn      fileName
	conf    int  // evidence for its uid: 2 name and index agree, 1 one of them
	fresh   bool // needs a new uid (and its wire size measured)
	newBase bool // its key is taken by another file: give it a new unique base
	rename  bool // its name should carry popbox's fields
}

// reconcile brings the counter, the index and the file names into
// agreement with what is in new/ and cur/, and returns the snapshot in
// delivery order. It runs under the index lock. On a warm mailbox it reads
// the counter, the index and two directories and writes nothing.
//
// Every message ends up with a uid exactly once: from its name (files
// popbox delivered or already renamed), else from the index (foreign files
// indexed before), else a fresh one. Fresh uids are persisted (counter
// file, then the file's new name, then the index) before reconcile returns,
// so before any client can see them.
//
// Failing to write (a full disk) does not make reconcile fail: it returns
// the snapshot, with unsaved saying what it could not write, and the next
// reconcile tries again. The snapshot then still hands out no UIDL that
// could recur: every UIDL in it was durable before (in a file name or the
// old index), except fresh ones, which are left out (the file waits for a
// later Open) unless the counter that allocated them was written and their
// new name or the new index is durable too. Callers that go on to rely on
// the index file (Import's presence check) treat unsaved as an error.
func (s *Store) reconcile(ctx context.Context, mb mailbox) (snap []entry, unsaved, err error) {
	ctr, ctrOK, err := s.readCounter(mb)
	if err != nil {
		return nil, nil, err
	}
	idx, idxExists, err := s.readIndex(mb)
	if err != nil {
		return nil, nil, err
	}
	dirty := !idxExists || idx.damaged
	var seen uidSeen
	byKey := make(map[string]record, len(idx.recs))
	for _, r := range idx.recs {
		if _, dup := byKey[r.key]; dup {
			dirty = true
		}
		byKey[r.key] = r
		seen.add(r.uid, r.epoch)
	}

	files, err := listFiles(mb)
	if err != nil {
		return nil, nil, err
	}
	cands := make([]candidate, len(files))
	matched := 0
	for i, f := range files {
		fn := parseFileName(f.name)
		c := candidate{entry: entry{sub: f.sub, name: f.name, key: fn.key}, fn: fn}
		rec, inIdx := byKey[fn.key]
		if inIdx {
			matched++
		}
		switch {
		case fn.hasFields:
			c.uid, c.epoch, c.size, c.lit, c.conf = fn.uid, fn.epoch, fn.size, fn.lit, 1
			if inIdx && rec.uid == fn.uid && rec.epoch == fn.epoch && rec.size == fn.size && (rec.lit == fn.lit || fn.lit == "") {
				// A literal too long for the name is in the index only.
				c.lit, c.conf = rec.lit, 2
			} else {
				dirty = true // the index lacks or contradicts it; the name wins
			}
			seen.add(fn.uid, fn.epoch)
		case inIdx:
			c.uid, c.epoch, c.size, c.lit, c.conf = rec.uid, rec.epoch, rec.size, rec.lit, 1
			c.rename = true
		default:
			c.fresh, c.rename = true, true
		}
		cands[i] = c
	}
	if matched != len(byKey) {
		dirty = true // stale records: files deleted behind our back
	}

	if resolveDuplicates(cands) {
		dirty = true
	}

	// Fresh files get uids in name order: Maildir names start with the
	// delivery time, so this approximates delivery order.
	var fresh []int
	for i := range cands {
		if cands[i].fresh {
			fresh = append(fresh, i)
		}
	}
	slices.SortFunc(fresh, func(a, b int) int { return cmp.Compare(cands[a].name, cands[b].name) })
	gone := map[int]bool{}
	for _, i := range fresh {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("maildir: open: %w", err)
		}
		c := &cands[i]
		size, err := s.measure(mb.path(c.sub, c.name))
		if isNotExist(err) {
			gone[i] = true // moved or deleted since the scan; next Open sees it
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("maildir: size of %s: %w", c.name, err)
		}
		c.size = size
	}

	if !ctrOK {
		// The deleted messages' uids were handed out too.
		if err := s.seeTrash(mb, &seen); err != nil {
			return nil, nil, err
		}
	}
	next, newEpoch := recoverCounter(ctr, ctrOK, idx, seen)
	if newEpoch && (ctrOK || idx.header || seen.any) { // else: a new, empty mailbox
		s.log.Warn("maildir: UID counter lost, starting a new UIDL epoch", "user", mb.user, "epoch", next.epoch)
	}
	next.floor = floorOf(next, ctr, ctrOK, idx, seen)
	next.msgs, next.bytes, next.acct = 0, 0, true
	for i := range cands {
		if !gone[i] {
			next.msgs++
			next.bytes += cands[i].size
		}
	}
	for _, i := range fresh {
		if !gone[i] {
			cands[i].uid, cands[i].epoch, next = s.allocate(next)
		}
	}
	var problems []error
	ctrSaved := true
	if !ctrOK || next != ctr {
		if err := s.writeCounter(mb, next); err != nil {
			problems = append(problems, err)
			ctrSaved = false
		}
	}
	if !ctrSaved {
		// The fresh uids are not durable, so none may be handed out: a
		// later delivery could get the same one. Such files wait.
		for _, i := range fresh {
			if !gone[i] {
				gone[i] = true
				s.log.Warn("maildir: cannot record a UIDL for a new file, leaving it out for now", "user", mb.user, "file", cands[i].name)
			}
		}
	}
	if !idx.header || idx.epoch != next.epoch {
		dirty = true
	}

	// Put uids into names, so that a lost index costs nothing.
	syncNeeded := map[string]bool{}
	renamed := map[int]bool{}
	for i := range cands {
		c := &cands[i]
		if gone[i] || !(c.rename || c.newBase) {
			continue
		}
		key := c.key
		if c.newBase {
			key, err = uniqueBase(time.Now(), s.pid, s.seq.Add(1), s.host)
			if err != nil {
				return nil, nil, err
			}
		}
		name := withFields(key, c.uid, c.epoch, c.size, c.lit, c.fn.info, c.fn.hasInfo)
		if len(name) > maxNameLen && c.lit != "" {
			name = withFields(key, c.uid, c.epoch, c.size, "", c.fn.info, c.fn.hasInfo)
		}
		if len(name) > maxNameLen && !c.newBase {
			continue // no room in the name: the index alone keeps its UIDL
		}
		err := s.step("rename in " + c.sub + "/")
		if err == nil {
			err = os.Rename(mb.path(c.sub, c.name), mb.path(c.sub, name))
		}
		if err != nil {
			if c.newBase {
				// It cannot stay under a key another message owns.
				s.log.Warn("maildir: cannot rename duplicate, leaving it out", "user", mb.user, "file", c.name, "err", err)
				gone[i] = true
			} else if !isNotExist(err) {
				s.log.Warn("maildir: cannot add UIDL to file name", "user", mb.user, "file", c.name, "err", err)
			}
			continue
		}
		c.name, c.key = name, key
		renamed[i] = true
		syncNeeded[c.sub] = true
		dirty = true
	}
	unsynced := map[string]bool{}
	for sub := range syncNeeded {
		if err := s.syncDir(mb.path(sub)); err != nil {
			problems = append(problems, err)
			unsynced[sub] = true
		}
	}

	order := make([]int, 0, len(cands))
	for i := range cands {
		if !gone[i] {
			order = append(order, i)
		}
	}
	// Delivery order: epochs only grow, uids grow within an epoch.
	slices.SortFunc(order, func(a, b int) int {
		ea, eb := &cands[a].entry, &cands[b].entry
		if c := cmp.Compare(ea.epoch, eb.epoch); c != 0 {
			return c
		}
		return cmp.Compare(ea.uid, eb.uid)
	})
	snap = make([]entry, len(order))
	for k, i := range order {
		snap[k] = cands[i].entry
	}
	if u := usageOf(snap); ctrSaved && u != next.usage() {
		// A duplicate that could not be renamed was left out.
		next.msgs, next.bytes = u.Messages, u.Bytes
		if err := s.writeCounter(mb, next); err != nil {
			problems = append(problems, err)
		}
	}
	if dirty || len(fresh) > 0 {
		recs := make([]record, len(snap))
		for i, e := range snap {
			recs[i] = record{key: e.key, uid: e.uid, epoch: e.epoch, size: e.size, lit: e.lit}
		}
		if err := s.writeIndex(mb, next, recs); err != nil {
			problems = append(problems, err)
			// A fresh uid only the counter holds would be lost with the
			// next reconcile, which would give the file another: leave
			// out those whose new name is not durable either.
			kept := make([]entry, 0, len(snap))
			for k, i := range order {
				c := &cands[i]
				if c.fresh && (!renamed[i] || unsynced[c.sub]) {
					s.log.Warn("maildir: cannot record a UIDL for a new file, leaving it out for now", "user", mb.user, "file", c.name)
					continue
				}
				kept = append(kept, snap[k])
			}
			snap = kept
		}
	}
	return snap, errors.Join(problems...), nil
}

// resolveDuplicates makes uids and keys unique among the candidates. Two
// files can claim one uid when a file was copied (within the Maildir or from
// another popbox mailbox), or one key when it exists in both new/ and cur/.
// The file with the best evidence (then the smaller name) keeps the uid;
// the others become fresh messages with a new base. It reports whether it
// changed anything.
func resolveDuplicates(cands []candidate) bool {
	better := func(a, b *candidate) bool {
		if a.conf != b.conf {
			return a.conf > b.conf
		}
		return a.name < b.name
	}
	changed := false
	byUID := make(map[uint64]int, len(cands))
	for i := range cands {
		c := &cands[i]
		if c.fresh {
			continue
		}
		u := uint64(c.epoch)<<32 | uint64(c.uid)
		j, dup := byUID[u]
		if !dup {
			byUID[u] = i
			continue
		}
		changed = true
		loser := c
		if better(c, &cands[j]) {
			byUID[u] = i
			loser = &cands[j]
		}
		loser.fresh, loser.newBase, loser.uid, loser.epoch, loser.conf, loser.lit = true, true, 0, 0, 0, ""
	}
	// Literal UIDLs (Import) must be unique too: a copy, or an import
	// retried after a crash between its rename and its index record. The
	// loser keeps its own uid and reports that instead. A literal that
	// spells another message's own (uid, epoch) always loses: that UIDL
	// cannot change.
	own := make(map[string]bool)
	for i := range cands {
		if c := &cands[i]; !c.fresh && c.lit == "" {
			own[formatUIDL(c.uid, c.epoch)] = true
		}
	}
	byLit := make(map[string]int)
	for i := range cands {
		c := &cands[i]
		if c.fresh || c.lit == "" {
			continue
		}
		if own[c.lit] {
			changed = true
			c.lit, c.rename = "", true
			continue
		}
		j, dup := byLit[c.lit]
		if !dup {
			byLit[c.lit] = i
			continue
		}
		changed = true
		loser := c
		if better(c, &cands[j]) {
			byLit[c.lit] = i
			loser = &cands[j]
		}
		loser.lit, loser.rename = "", true
	}
	// Keys: uid holders first, then fresh files in name order.
	order := make([]int, 0, len(cands))
	for i := range cands {
		if !cands[i].fresh {
			order = append(order, i)
		}
	}
	var rest []int
	for i := range cands {
		if cands[i].fresh && !cands[i].newBase {
			rest = append(rest, i)
		}
	}
	slices.SortFunc(rest, func(a, b int) int { return cmp.Compare(cands[a].name, cands[b].name) })
	order = append(order, rest...)
	keys := make(map[string]bool, len(cands))
	for _, i := range order {
		c := &cands[i]
		if keys[c.key] {
			c.newBase = true
			changed = true
			continue
		}
		keys[c.key] = true
	}
	return changed
}

// cleanTmp removes files an MDA left in tmp/ more than 36 hours ago.
func (s *Store) cleanTmp(mb mailbox) {
	d, err := os.Open(mb.path("tmp"))
	if err != nil {
		return
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-tmpMaxAge)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || info.ModTime().After(cutoff) {
			continue
		}
		if err := os.Remove(mb.path("tmp", e.Name())); err == nil || isNotExist(err) {
			s.log.Info("maildir: removed stale tmp file", "user", mb.user, "file", e.Name())
		}
	}
}
