"""What is wrong with the ``volumes`` plugin's records, against the
instances' records, the hypervisors and the volume files (its
:meth:`~resize_flows.plugins.Plugin.audit`).

At rest every in-use volume has exactly one connected attachment, on its
instance's host, and the domain there (its XML read from libvirt, not
from our files) has the disk; no other domain of the instance has it;
an available volume has no attachment; every volume's file is there, a
regular file of ours.
"""
import libvirt

from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows.persistence import volumes as volume_db
from resize_flows.plugins import volume_files
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import host as libvirt_host

NAME = 'volumes'


def domain_disks(host, instance_uuid):
    """{volume id: path} of the volume disks of ``instance_uuid``'s
    domain on ``host`` (a host record), read through libvirt: its
    definition, and its live XML too when it runs; None when the host
    has no such domain."""
    conn = libvirt_host.get_connection(host['uri'], host['name'])
    try:
        dom = conn.lookupByUUIDString(instance_uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
    xmls = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)]
    if dom.isActive():
        xmls.append(dom.XMLDesc(0))
    found = {}
    for xml in xmls:
        for dev in config.plugin_devices(xml).get(NAME, []):
            if dev['type'] == 'disk':
                found[dev['id']] = dev['path']
    return found


def _file_problem(vol):
    try:
        volume_files.check(vol['path'])
    except exception.DiskError as exc:
        return 'volume %s: its file %s' % (vol['id'], exc)
    return None


def problems():
    found = []
    hosts = {h['name']: h for h in repository.host_list()}
    instances = {i['uuid']: i for i in repository.instance_list()}
    atts = volume_db.attachment_list()
    for vol in volume_db.volume_list():
        mine = [a for a in atts if a['volume_id'] == vol['id']]
        connected = [a for a in mine if a['connected']]
        if vol['status'] == volume_db.IN_USE and len(connected) != 1:
            found.append('volume %s is in-use with %d connected '
                         'attachments' % (vol['id'], len(connected)))
        if vol['status'] == volume_db.AVAILABLE and mine:
            found.append('volume %s is available with %d attachments'
                         % (vol['id'], len(mine)))
        if len({a['instance_uuid'] for a in mine}) > 1:
            found.append('volume %s is attached to two servers'
                         % vol['id'])
        problem = _file_problem(vol)
        if problem:
            found.append(problem)
    for att in atts:
        inst = instances.get(att['instance_uuid'])
        what = 'volume %s of %s on %s' % (att['volume_id'],
                                          att['instance_uuid'], att['host'])
        if inst is None:
            found.append('%s: no such instance' % what)
            continue
        if att['connected'] and inst['host'] != att['host']:
            found.append('%s is connected, but the instance lives on %s'
                         % (what, inst['host']))
        disks = domain_disks(hosts[att['host']], att['instance_uuid'])
        has = disks is not None and att['volume_id'] in disks
        if att['connected'] and not has:
            found.append('%s is connected, but the domain there lacks the '
                         'disk' % what)
        if not att['connected'] and has:
            found.append('%s is not connected, but the domain there has '
                         'the disk' % what)
    return found
