-- fimd schema v5: security attributes per baseline row (capabilities, ACLs, SELinux label,
-- other xattrs by digest, inode flags) as one JSON object. NULL = not read yet (rows recorded
-- by an earlier fimd: the next scan fills them in silently, never a flood of events);
-- '' = read, none set. Never edit a released migration: add a new file.
ALTER TABLE baseline ADD COLUMN attrs TEXT;
