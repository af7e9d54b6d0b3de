package snapshot

// Crash makes s's Saves stop at step ("upload", "copy", "delete") as a
// process killed there would; "" undoes it.
func Crash(s *Store, step string) { s.crash = step }
