"""A real OpenSSH server on loopback for the Ansible tests: the playbooks reach their "nodes"
(127.0.0.2, 127.0.0.3, ...) over ssh exactly as they reach real ones, only all of them are this
machine. Keys, host key, configuration and pid file live in one temporary directory; the server
listens on every address given, on one port it picks, and is stopped by stop()."""
import os
import socket
import subprocess
import time

from conftest import stop_server

SSHD = '/usr/sbin/sshd'


def _free_port(addresses):
    """A port that is free on every address (the server retries with another if it races)."""
    while True:
        s = socket.socket()
        s.bind((addresses[0], 0))
        port = s.getsockname()[1]
        s.close()
        try:
            for a in addresses[1:]:
                t = socket.socket()
                t.bind((a, port))
                t.close()
            return port
        except OSError:
            continue


def _accepts(address, port):
    try:
        with socket.create_connection((address, port), timeout=5) as c:
            return c.recv(4).startswith(b'SSH-')
    except OSError:
        return False


class Sshd:
    def __init__(self, workdir, addresses):
        self.dir = str(workdir)
        self.addresses = list(addresses)
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)  # privilege separation directory
        self.host_key = os.path.join(self.dir, 'host_ed25519')
        self.client_key = os.path.join(self.dir, 'client_ed25519')
        for k in (self.host_key, self.client_key):
            if not os.path.exists(k):
                subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', k], check=True)
        with open(self.client_key + '.pub') as f, \
                open(os.path.join(self.dir, 'authorized_keys'), 'w') as out:
            out.write(f.read())
        self.proc = None
        self.port = None

    def _config(self, port):
        path = os.path.join(self.dir, 'sshd_config')
        with open(path, 'w') as f:
            f.write(f'Port {port}\n')
            for a in self.addresses:
                f.write(f'ListenAddress {a}\n')
            f.write(f'HostKey {self.host_key}\n'
                    f'PidFile {self.dir}/sshd.pid\n'
                    f'AuthorizedKeysFile {self.dir}/authorized_keys\n'
                    'PermitRootLogin prohibit-password\n'
                    'PasswordAuthentication no\nKbdInteractiveAuthentication no\n'
                    'StrictModes no\nUsePAM no\nPrintMotd no\n'
                    'MaxStartups 100\nMaxSessions 100\n'
                    'AcceptEnv LANG LC_*\n'
                    'Subsystem sftp /usr/lib/openssh/sftp-server\n')
        return path

    def start(self):
        """Starts the server; returns once every address accepts connections."""
        for _ in range(5):
            port = _free_port(self.addresses)
            cfg = self._config(port)
            self.proc = subprocess.Popen([SSHD, '-D', '-e', '-f', cfg],
                                         stdout=subprocess.DEVNULL,
                                         stderr=open(os.path.join(self.dir, 'sshd.log'), 'a'))
            while self.proc.poll() is None and not all(_accepts(a, port) for a in self.addresses):
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.port = port
                return self
        with open(os.path.join(self.dir, 'sshd.log')) as f:
            raise RuntimeError('sshd did not start: ' + f.read()[-2000:])

    def stop(self):
        if self.proc:
            stop_server(self.proc)
