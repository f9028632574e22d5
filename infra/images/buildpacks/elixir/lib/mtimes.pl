#!/usr/bin/perl
# Keeps mix's view of the sources stable across builds. A pushed tree arrives with fresh
# mtimes (git archive stamps every file with the commit time), which would make mix
# recompile files (and path dependencies) that did not change, or, with an older commit
# time, miss files that did. So, against the manifest of the previous build:
#   restore MANIFEST DIR [CHANGED]
#                         unchanged files (same path, same sha256) get their previous mtime
#                         back; new or changed files get "now" (and are listed in CHANGED,
#                         one path per line, with files that were removed)
#   save MANIFEST DIR     records path, sha256 and mtime of every file
# _build, deps and .git are skipped.
use strict;
use warnings;
use Digest::SHA;
use File::Find;

my ($cmd, $manifest, $dir, $changed_list) = @ARGV;
die "usage: mtimes.pl restore|save MANIFEST DIR [CHANGED]\n" unless $cmd && $manifest && $dir;
chdir $dir or die "cd $dir: $!\n";

my %files;
find({ no_chdir => 1, wanted => sub {
  my $p = $File::Find::name;
  if (-d $p && $p =~ m{^\./(_build|deps|\.git)$}) { $File::Find::prune = 1; return; }
  return unless -f $p && !-l $p;
  my $sha = Digest::SHA->new(256);
  $sha->addfile($p);
  $files{$p} = $sha->hexdigest;
}}, '.');

if ($cmd eq 'restore') {
  my %old;
  if (open(my $fh, '<', $manifest)) {
    while (<$fh>) {
      chomp;
      my ($sha, $mtime, $path) = split /\t/, $_, 3;
      $old{$path} = [$sha, $mtime] if defined $path;
    }
  }
  my $now = time;
  my ($kept, $changed) = (0, 0);
  my @listed = grep { !exists $files{$_} } sort keys %old;
  for my $p (sort keys %files) {
    my $o = $old{$p};
    if ($o && $o->[0] eq $files{$p}) { utime($o->[1], $o->[1], $p); $kept++; }
    else { utime($now, $now, $p); $changed++; push @listed, $p; }
  }
  if ($changed_list) {
    open(my $out, '>', $changed_list) or die "$changed_list: $!\n";
    print $out "$_\n" for @listed;
    close $out;
  }
  print "$kept $changed\n";
} elsif ($cmd eq 'save') {
  open(my $fh, '>', "$manifest.tmp") or die "$manifest: $!\n";
  for my $p (sort keys %files) {
    my $mtime = (stat $p)[9];
    print $fh "$files{$p}\t$mtime\t$p\n";
  }
  close $fh;
  rename "$manifest.tmp", $manifest or die "$manifest: $!\n";
} else {
  die "unknown command $cmd\n";
}
