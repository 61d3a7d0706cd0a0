"""Commands run on another machine over ssh.

How this process reaches a machine (:func:`ssh_argv`, options of
``[remote]``; :func:`parse_address` of ``[user@]host[:port]``) and how a
command line is built for it: quoted (:func:`q`), run by ``/bin/sh``
whatever the login shell there (:func:`remote_command`), as the owner of
an instances path (:func:`as_owner_command`), with the shell functions
that refuse a planted link or file (:data:`GUARDS`). :mod:`.files` runs
a host's file operations this way, :mod:`.transfer` its rsync copies.
"""
import os
import re
import shlex
import stat
import tempfile

from resize_flows.conf import CONF
from resize_flows import exception

# exit status of ssh itself (not of the remote command) when it failed.
SSH_FAILED = 255
# Nothing may start with '-': ssh would take it for an option.
_ADDRESS = re.compile(r'^(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?'
                      r'(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*'
                      r'|\[[0-9A-Fa-f:.]+\])'
                      r'(?::(?P<port>[0-9]{1,5}))?$')


def parse_address(address):
    """``(user or None, host, port or None)`` of ``[user@]host[:port]``;
    ``InvalidInput`` for anything else."""
    match = _ADDRESS.match(address or '')
    port = match and match.group('port')
    if not match or (port and not 0 < int(port) < 65536):
        raise exception.InvalidInput(
            reason='%r is not an ssh address ([user@]host[:port])'
            % (address,))
    return match.group('user'), match.group('host'), port and int(port)


#: Shell functions of the commands run on another machine: ``refuse``
#: what is not what it should be, with a message that starts with
#: "refused: " (on stderr, exit 3); ``plain PATH...``: each is absent or
#: a regular file with one link (no symbolic link, no directory, no hard
#: link); ``realdir PATH...``: each is absent or a directory, not a link.
GUARDS = (
    'refuse() { echo "refused: $1 $2; resize-flows follows no link and '
    'trusts no file it did not make in an instances path (nothing was '
    'changed)" >&2; exit 3; }; '
    'plain() { for f; do if [ -L "$f" ]; then refuse "$f" "is a symbolic '
    'link"; elif [ -d "$f" ]; then refuse "$f" "is a directory"; elif '
    '[ -e "$f" ]; then [ -f "$f" ] || refuse "$f" "is not a regular file"; '
    'n=$(stat -c %h -- "$f") || exit 3; [ "$n" = 1 ] || refuse "$f" '
    '"has $n hard links"; fi; done; }; '
    'realdir() { for d; do if [ -L "$d" ]; then refuse "$d" "is a symbolic '
    'link, not a directory"; elif [ -e "$d" ] && [ ! -d "$d" ]; then '
    'refuse "$d" "is not a directory"; fi; done; }; ')

# Runs "$2" as the owner of the directory "$1" when that is not root and
# we are root; umask 077 either way.
_AS_OWNER = (
    'umask 077; '
    'if [ "$(id -u)" = 0 ] && o=$(stat -L -c %u:%g -- "$1" 2>/dev/null) '
    '&& [ "${o%:*}" != 0 ]; then exec setpriv --reuid="${o%:*}" '
    '--regid="${o#*:}" --clear-groups -- /bin/sh -c "$2"; fi; '
    'exec /bin/sh -c "$2"')


def as_owner_command(instances_path, script):
    """The command line that runs ``script`` on another machine as the
    owner of ``instances_path`` there (see :class:`.files.SshFiles`)."""
    return 'exec /bin/sh -c %s rf %s %s' % (
        q(_AS_OWNER), q(instances_path), q(GUARDS + script))


def q(value):
    return shlex.quote(str(value))


def ssh_argv(address, control=True):
    """The ssh command (list) reaching ``address``, options of [remote]."""
    user, host, port = parse_address(address)
    argv = [CONF.remote.ssh_path]
    if CONF.remote.ssh_config_file:
        argv += ['-F', CONF.remote.ssh_config_file]
    if CONF.remote.ssh_identity_file:
        argv += ['-i', CONF.remote.ssh_identity_file]
    # ssh keeps the first value it is given: the operator's come first.
    for option in CONF.remote.ssh_options:
        argv += ['-o', option]
    # A machine that stops answering mid-command is given up after
    # three unanswered keep-alives.
    timeout = CONF.remote.ssh_connect_timeout
    argv += ['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=%d' % timeout,
             '-o', 'ServerAliveInterval=%d' % timeout,
             '-o', 'ServerAliveCountMax=3']
    if control and CONF.remote.ssh_control_persist:
        argv += ['-o', 'ControlMaster=auto',
                 '-o', 'ControlPath=%s' % os.path.join(_control_dir(), '%C'),
                 '-o', 'ControlPersist=%d' % CONF.remote.ssh_control_persist]
    if port:
        argv += ['-p', str(port)]
    host = host.strip('[]')            # ssh takes an IPv6 address bare
    argv.append('%s@%s' % (user, host) if user else host)
    return argv


def remote_command(script):
    """The command line that runs the POSIX shell ``script`` on another
    machine, whatever the login shell of the user there (ssh hands the
    command to it): the same in sh, bash, dash, zsh or fish."""
    return 'exec /bin/sh -c %s' % q(script)


def last_line(data):
    lines = [ln for ln in (data or b'').decode(errors='replace').splitlines()
             if ln.strip()]
    return lines[-1].strip() if lines else 'no message'


def _control_dir():
    """The directory of ssh's control sockets: ours (this euid) and
    private (mode 0700), or ``HypervisorUnavailable``. Anyone may create
    a name in TMPDIR first: a directory of another user, or one others
    may enter, would give them our ssh connections (and the commands
    sent over them)."""
    # Short: a Unix socket path has at most 107 bytes.
    path = os.path.join(tempfile.gettempdir(),
                        'resize-flows-ssh-%d' % os.geteuid())
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
            or stat.S_IMODE(st.st_mode) & 0o077):
        raise exception.HypervisorUnavailable(
            host='ssh', reason='the ssh control directory %s is not a '
            'private directory of ours (uid %d, mode 0700): it is %s of '
            'uid %d, mode %04o; remove it or set [remote]/'
            'ssh_control_persist = 0' % (
                path, os.geteuid(),
                'a directory' if stat.S_ISDIR(st.st_mode) else 'not a '
                'directory', st.st_uid, stat.S_IMODE(st.st_mode)))
    return path
