package store

// Size reports the bytes the store occupies: Badger's LSM tree and value
// log, as Badger last measured them (it refreshes the figures about once a
// minute).
func (s *Store) Size() (lsm, vlog int64) { return s.db.Size() }
