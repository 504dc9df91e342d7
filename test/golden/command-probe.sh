PATH="$PATH:/usr/bin:/bin"
if ! command -v bash >/dev/null 2>&1 || ! command -v timeout >/dev/null 2>&1; then echo "nrhi-probe missing"; exit 0; fi
IFS= read -r m || exit 90
case "$m" in check) echo "nrhi-probe ready"; exit 0;; probe) ;; *) exit 91;; esac
IFS= read -r a || exit 90
IFS= read -r p || exit 90
IFS= read -r s || exit 90
case "$a" in ''|*[!0-9a-fA-F.:]*) exit 91;; esac
[ "$(printf %s "$a" | wc -c)" -le 45 ] || exit 91
case "$p" in ''|0*|*[!0-9]*|??????*) exit 91;; esac
[ "$p" -le 65535 ] || exit 91
case "$s" in [1-9]) ;; *) exit 91;; esac
e=$(LC_ALL=C timeout "$s" bash -c 'exec 3<>"/dev/tcp/$1/$2"' nrhi-probe "$a" "$p" 2>&1 </dev/null); rc=$?
if [ "$rc" -eq 0 ]; then echo "nrhi-probe connected"
elif [ "$rc" -eq 124 ]; then echo "nrhi-probe timeout"
else case "$e" in *"Connection refused"*) echo "nrhi-probe refused";; *) printf "nrhi-probe failed %s\n" "$(printf %s "$e" | tr -c "A-Za-z0-9 :._-" " " | head -c 200)";; esac; fi