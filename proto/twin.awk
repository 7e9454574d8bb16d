# twin.awk: derive the proto2 twin of a published proto3 file for protoc-c.
#
# protoc-c 1.4.1 refuses proto3 `optional`. proto2 `optional` has the same wire
# encoding and gives protobuf-c a has_ flag, so the twin keeps package, names,
# numbers and types and marks every singular field `optional`. The one other
# change: `string session_id` becomes `bytes session_id` (same wire encoding),
# because protobuf-c strings are NUL-terminated and would silently truncate an
# embedded NUL that the daemon must reject instead.
BEGIN { depth = 0 }
/^[ \t]*syntax[ \t]*=/ { print "syntax = \"proto2\";"; next }
{
	line = $0
	# Only fields directly inside a message (not enum values, not rpc lines).
	if (inmsg[depth] && line ~ /^[ \t]*[A-Za-z_.][A-Za-z0-9_.]*[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*=[ \t]*[0-9]+/ &&
	    line !~ /^[ \t]*(repeated|optional|required|map<|reserved|option)/) {
		match(line, /^[ \t]*/)
		line = substr(line, 1, RLENGTH) "optional " substr(line, RLENGTH + 1)
	}
	if (inmsg[depth])
		sub(/optional[ \t]+string[ \t]+session_id[ \t]*=/, "optional bytes session_id =", line)
	print line
	n = split($0, ch, "")
	for (i = 1; i <= n; i++) {
		if (ch[i] == "{") {
			depth++
			inmsg[depth] = ($0 ~ /^[ \t]*message[ \t]/)
		} else if (ch[i] == "}") {
			depth--
		}
	}
}
