-- White Beat schema, version 3: usernames unique by how they look, and empty conversations
-- listed only for the members who opened them.

-- The look-alike key of the username (NFKC, case folding, UTS #39 confusable skeleton; see
-- auth::name_key). SQL cannot compute it: the migration fills it for existing rows right
-- after this script (db::migrate), and every insert sets it. Not UNIQUE, because accounts
-- made before this version may already share one; a new account's key is checked free in
-- its own write transaction instead.
ALTER TABLE users ADD COLUMN name_key TEXT;
CREATE INDEX users_name_key ON users(name_key);

-- Whether each member has opened the conversation (GET messages/) or started it. While a
-- conversation has no message it is listed only for a member who did, so reading (or a
-- link that makes someone's browser read) never puts you in another user's list. From its
-- first message on it is listed for both. A conversation made before this version has
-- neither flag: nobody can tell who opened it, so an empty one is listed for neither member
-- until one of them opens it again.
ALTER TABLE conversations ADD COLUMN user1_opened INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN user2_opened INTEGER NOT NULL DEFAULT 0;
