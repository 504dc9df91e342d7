for f in /etc/resolv.conf /run/systemd/resolve/resolv.conf /etc/chrony/chrony.conf /etc/chrony.conf /etc/chrony/conf.d/*.conf /etc/chrony/sources.d/*.sources /etc/ntp.conf /etc/ntpsec/ntp.conf /etc/systemd/timesyncd.conf /etc/systemd/timesyncd.conf.d/*.conf /run/systemd/timesyncd.conf.d/*.conf /etc/sssd/sssd.conf /etc/sssd/conf.d/*.conf /etc/nslcd.conf /etc/ldap/ldap.conf /etc/openldap/ldap.conf; do
  [ -f "$f" ] || continue
  if [ -r "$f" ]; then printf "\n=== %s\n" "$f"; head -c 32768 "$f"; else printf "\n=== %s unreadable\n" "$f"; fi
done
if [ -d /run/systemd/system ] && command -v timedatectl >/dev/null 2>&1; then
  printf "\n=== timedatectl\n"; timeout 3 timedatectl show-timesync -p SystemNTPServers -p LinkNTPServers -p FallbackNTPServers 2>/dev/null | head -c 8192
fi
printf "\n=== end\n"