#!/usr/bin/python3
"""From the shared POP3 harness (tools/getmail_nohang.py), unchanged.

Run /usr/bin/getmail with a fix for getmail6 < 6.19.06's lost-SIGCHLD race.

getmail6 6.18 (Debian 12) installs its SIGCHLD handler *after* fork(); when
the delivery child exits first the signal is lost and getmail waits for the
child until its timeout (seen here as a ~1-in-40 hang mid-mailbox; upstream
getmail6 issues #52/#226, fixed upstream by switching to multiprocessing).
This wrapper replaces ForkingBase.forkchild with a plain fork()+waitpid(),
so the harness measures the POP3 server, not that race.  Everything else is
stock getmail; all arguments are passed through.
"""
import os
import runpy
import sys

import getmailcore.baseclasses as gb
from getmailcore.exceptions import getmailOperationError


def forkchild(self, childfun, with_out=True):
    self.child = child = gb.Namespace()
    child.stdout = gb.TemporaryFile23()
    child.stderr = gb.TemporaryFile23()
    child.childpid = os.fork()
    if child.childpid == 0:
        childfun(child.stdout, child.stderr)
        os._exit(0)
    _, status = os.waitpid(child.childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError('child pid %d killed by signal %d'
                                    % (child.childpid, os.WTERMSIG(status)))
    child.exitcode = os.WEXITSTATUS(status)
    child.stderr.seek(0)
    child.err = child.stderr.read().strip().decode()
    child.stdout.seek(0)
    if with_out:
        child.out = child.stdout.read().strip()
    return child


gb.ForkingBase.forkchild = forkchild
sys.argv[0] = "/usr/bin/getmail"
runpy.run_path("/usr/bin/getmail", run_name="__main__")
