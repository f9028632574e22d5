#!/usr/bin/perl
# Keeps mix's view of the sources stable across builds. A pushed tree arrives with fresh
# mtimes (git archive stamps every file with the commit time), which would make mix
# recompile files (and path dependencies) that did not change, or, with an older commit
# time, miss files that did. So, against the manifest of the previous build:
#   restore MANIFEST DIR [PREFIX]
#                         unchanged files (same path, same sha256) get their previous mtime
#                         back; new or changed files get "now". Prints one line: the
#                         numbers of unchanged and of new or changed files; the fingerprint
#                         of what a kept Mix reads once (PREFIX, every mix.exs, mix.lock
#                         and config/ file, the environment); mix.exs's sha256; and
#                         "app_only" when every file that changed or went is the app's own
#                         lib/, priv/, test/ or documentation, else "other"
#   save MANIFEST DIR     records path, sha256 and mtime of every file
# _build, deps and .git are skipped.
use strict;
use warnings;
use Digest::SHA;
use File::Find;

my ($cmd, $manifest, $dir, $prefix) = @ARGV;
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
  my $app_only = 1;
  for (@listed) {
    $app_only = 0 unless m{^\./(lib|priv|test)/} || m{^\./(README|CHANGELOG|LICENSE)[^/]*$} || m{^\./[^/]*\.md$};
  }
  # what a kept Mix reads once: a change there needs a fresh one
  my $fp = Digest::SHA->new(256);
  $fp->add(($prefix // '') . "\n");
  for my $p (sort keys %files) {
    next if $p =~ m{^\./node_modules/};
    next unless $p =~ m{(^|/)mix\.(exs|lock)$} || $p =~ m{/config/};
    $fp->add("$files{$p}  $p\n");
  }
  for my $k (sort keys %ENV) {
    next if $k =~ /^(GIGALIXIR_PREVIOUS_SLUG|GIGALIXIR_CLEAN|PWD|OLDPWD|SHLVL|_)$/;
    $fp->add("$k=$ENV{$k}\n");
  }
  printf "%d %d %s %s %s\n", $kept, $changed, $fp->hexdigest, $files{'./mix.exs'} // '-',
    $app_only ? 'app_only' : 'other';
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
