"""Helpers of the volumes plugin's functional tests: what libvirt (not
our code) says a domain has, real qemu-img and qemu-io on the files."""
import json
import os
import subprocess
import xml.etree.ElementTree as ET

import libvirt

from resize_flows.persistence import repository
from resize_flows.persistence import volumes as volume_db
from resize_flows import plugins
from resize_flows.virt.libvirt import host as libvirt_host


def plugin():
    [found] = plugins.load(['volumes'])
    return found


def domain_disks(host_name, uuid):
    """{serial: (target dev, source file, alias)} of the disks with a
    serial in the definition of ``uuid``'s domain on ``host_name``, as
    libvirt gives it (the test driver's hypervisor lives in the
    process's connection); None when there is no such domain."""
    host = repository.host_get(host_name)
    conn = libvirt_host.get_connection(host['uri'], host_name)
    try:
        dom = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return None
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    found = {}
    for disk in root.findall('./devices/disk'):
        serial = disk.findtext('serial')
        if serial:
            alias = disk.find('alias')
            found[serial] = (disk.find('target').get('dev'),
                             disk.find('source').get('file'),
                             alias.get('name') if alias is not None
                             else None)
    return found


def attachments():
    """{(volume id, host): connected} of every attachment."""
    return {(a['volume_id'], a['host']): a['connected']
            for a in volume_db.attachment_list()}


def qemu_img_info(path):
    return json.loads(subprocess.run(
        ['qemu-img', 'info', '--output=json', '-U', path],
        check=True, capture_output=True, text=True).stdout)


def fill(path, fmt, pattern=0x5a):
    """Write 1 MiB of ``pattern`` at offset 1 MiB of the volume, through
    qemu-io (the format's own layer)."""
    subprocess.run(['qemu-io', '-f', fmt, '-c',
                    'write -P %d 1M 1M' % pattern, path],
                   check=True, capture_output=True)


def same_content(path, copy):
    """qemu-img compare of the volume and a copy of it."""
    return subprocess.run(['qemu-img', 'compare', '-U', path, copy],
                          capture_output=True).returncode == 0


def inode(path):
    st = os.lstat(path)
    return st.st_dev, st.st_ino
