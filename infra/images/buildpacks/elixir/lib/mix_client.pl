#!/usr/bin/perl
# mix_client.pl SOCKET ARGS...: `mix ARGS` run by the Mix server listening on SOCKET
# (mix_server.exs, whose header describes the frames), with this process's working directory
# and environment. Prints what mix writes and exits with its status; exits 75 when no server
# answers (then nothing ran) and 1 when the server stopped before the end.
# It loads no module (Socket and IO::Socket took some 30 ms to load in a build container):
# the builder is Linux, where AF_UNIX and SOCK_STREAM are 1 and a sockaddr_un is the family
# and 108 bytes of path.
use strict;

my $path = shift @ARGV;
die "usage: mix_client.pl SOCKET ARGS...\n" unless defined $path;
exit 75 if length($path) > 107;
socket(my $conn, 1, 1, 0) or exit 75;
connect($conn, pack('S Z108', 1, $path)) or exit 75;
binmode $conn;
my $cwd = readlink('/proc/self/cwd') // $ENV{PWD} // '.';
binmode STDOUT;

my @env;
for my $name (sort keys %ENV) {
  my $value = $ENV{$name};
  $value =~ s/\\/\\\\/g;
  $value =~ s/\n/\\n/g;
  push @env, "$name=$value";
}
my $request = join("\n", $cwd, "--", @env, "--", @ARGV);
utf8::encode($request) if utf8::is_utf8($request);
syswrite($conn, pack("N", length $request) . $request) or exit 75;

sub read_exactly {
  my ($n) = @_;
  my $buf = '';
  while (length $buf < $n) {
    my $got = sysread($conn, $buf, $n - length $buf, length $buf);
    return undef unless $got;
  }
  return $buf;
}

while (defined(my $head = read_exactly(4))) {
  my $frame = read_exactly(unpack("N", $head));
  last unless defined $frame;
  my $kind = substr($frame, 0, 1, '');
  if ($kind eq 'o') {
    syswrite(STDOUT, $frame);
  } elsif ($kind eq 's') {
    exit($frame =~ /^\d+$/ ? $frame : 1);
  }
}
print "** (mix) the build's Mix server stopped before the end\n";
exit 1;
