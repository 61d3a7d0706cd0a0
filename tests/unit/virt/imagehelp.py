"""Images for the driver's tests: a store file with a kernel and ramdisk,
described as ``imagestore.for_driver`` describes an image to a driver."""
import hashlib
import json
import os
import subprocess
import uuid

FULL = {'name': 'm1.full', 'vcpus': 1, 'memory_mb': 256, 'root_gb': 1,
        'ephemeral_gb': 1, 'swap_mb': 16}
BIGGER = {'name': 'm1.bigger', 'vcpus': 2, 'memory_mb': 512, 'root_gb': 2,
          'ephemeral_gb': 2, 'swap_mb': 32}


def sha256(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def make_image(store, disk_format='qcow2', kernel=True, size='64M'):
    """An image in the directory ``store`` with a known pattern at 1 MiB,
    and (with ``kernel``) a kernel and a ramdisk beside it."""
    os.makedirs(store, exist_ok=True)
    image_id = str(uuid.uuid4())
    path = os.path.join(store, image_id)
    subprocess.run(['qemu-img', 'create', '-q', '-f', disk_format, path,
                    size], check=True)
    subprocess.run(['qemu-io', '-f', disk_format, '-c',
                    'write -P 0x5a 1M 1M', path], check=True,
                   capture_output=True)
    image = {'uuid': image_id, 'sha256': sha256(path),
             'disk_format': disk_format,
             'virtual_size': json.loads(subprocess.run(
                 ['qemu-img', 'info', '--output=json', path], check=True,
                 capture_output=True).stdout)['virtual-size'],
             'path': path, 'kernel_path': None, 'ramdisk_path': None,
             'kernel_sha256': None, 'ramdisk_sha256': None}
    if kernel:
        # Big enough to be copied in several chunks of 64 KiB.
        for key, content in (('kernel', b'KERNEL' * 50000),
                             ('ramdisk', bytes(range(256)) * 2000)):
            part = os.path.join(store, '%s.%s' % (image_id, key))
            with open(part, 'wb') as handle:
                handle.write(content)
            image[key + '_path'] = part
            image[key + '_sha256'] = hashlib.sha256(content).hexdigest()
    return image


def qemu_info(path):
    return json.loads(subprocess.run(
        ['qemu-img', 'info', '--output=json', '-U', path], check=True,
        capture_output=True).stdout)


def iso_meta(path):
    """(volume id, parsed openstack/latest/meta_data.json) of an ISO."""
    volume = subprocess.run(['isoinfo', '-d', '-i', path], check=True,
                            capture_output=True, text=True).stdout
    label = [line.split(':', 1)[1].strip() for line in volume.splitlines()
             if line.startswith('Volume id:')][0]
    meta = subprocess.run(['isoinfo', '-R', '-i', path, '-x',
                           '/openstack/latest/meta_data.json'], check=True,
                          capture_output=True).stdout
    return label, json.loads(meta)
