"""The OpenSSH transport (``ssh.client: openssh``): the system ssh, one shared connection.

``transport`` (OpenSshTransport, ``disconnect``), ``master`` (the ControlMaster: check,
start, stop), ``sshconf`` (the generated ssh_config and command lines), ``askpass`` and
``askpass_client`` (answering ssh's questions through the toolkit's prompt), ``diagnose``
(ssh's messages as the toolkit's errors), ``runtime`` (the private folder and its files).

Everything ssh_config can say works, because ssh itself reads it: ProxyCommand, Match exec,
GSSAPI, certificates, FIDO keys. Nothing here imports paramiko.
"""
