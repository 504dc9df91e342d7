n=0
while IFS= read -r q; do
  n=$((n + 1)); [ $n -le 64 ] || break
  case "$q" in
    'host '*) v=${q#host }; case "$v" in ''|-*|*[!A-Za-z0-9.-]*) continue;; esac
      printf "=== host %s\n" "$v"; timeout 3 getent ahosts "$v" | head -n 32;;
    'user '*) v=${q#user }; case "$v" in ''|-*|*[!a-z0-9_-]*) continue;; esac
      printf "=== user %s\n" "$v"; getent passwd "$v" | head -n 1 | cut -d: -f3;;
  esac
done