#!/usr/bin/perl
# cache.pl: a build's cache entry and its sources, before and after the build, in one
# process each time. It loads no module (in a build container each costs milliseconds:
# File::Find and Digest::SHA took 20-30 ms to load) and hashes with coreutils' sha256sum.
#
#   begin ENTRIES LOCKFILE KEY DIR NEXT
#     Line 1: the cache key's entry id and LOCKFILE's sha256 (LOCKFILE is mix.lock, or
#     mix.exs without a lock, in DIR). The key is "deps=LOCKFILE SHA256" and the lines of
#     KEY (the versions and MIX_ENV); the entry, ENTRIES/ID, is named by the first 16 hex
#     digits of the key's sha256.
#     Line 2, the entry's seal: "ok BYTES" when the entry's files match its seal (which is
#     then removed: the build writes into the entry), "none" when there is no entry, else
#     why it cannot be used (the caller discards it).
#     The seal is the path, size and mtime (whole seconds, as tar keeps them) of every file
#     the entry holds, written once a build has finished writing into it: an entry without
#     one (its build stopped) or whose files differ from it is not used.
#     Then the sources in DIR (_build, deps and .git skipped). A pushed tree arrives with
#     fresh mtimes (git archive stamps every file with the commit time), which would make
#     mix recompile files that did not change, or, with an older commit time, miss files
#     that did. So, against the sources.manifest of an entry that was ok, unchanged files
#     (same path, same sha256) get their previous mtime back, and new or changed files get
#     "now". Line 3: the numbers of unchanged and of new or changed files; the fingerprint of
#     what a kept Mix reads once (DIR, the entry, KEY, every mix.exs, mix.lock and config/
#     file, the environment); mix.exs's sha256 ("-" without one); and "app_only" when every
#     file that changed or went is the app's own lib/, priv/, test/ or documentation, else
#     "other". The tree's manifest (sha256, mtime, path of each file) is written to NEXT.
#   end ENTRY LIMIT NEXT ok|failed
#     ok: NEXT becomes ENTRY's sources.manifest; failed: NEXT goes. Then seals ENTRY and
#     evicts the least recently used entries beside it beyond LIMIT bytes in all; prints
#     "evicted NAME" for each and "kept N".
use strict;

my ($cmd, @args) = @ARGV;
my $SEAL = '.seal';

# Calls $each->(path, [lstat]) for every regular file under $dir (symbolic links are not
# followed), paths as "$dir/...", skipping directories for which $skip->(path) is true.
sub walk {
  my ($dir, $skip, $each) = @_;
  my @todo = ($dir);
  while (defined(my $d = shift @todo)) {
    opendir(my $dh, $d) or next;
    my @names = readdir $dh;
    closedir $dh;
    for my $n (@names) {
      next if $n eq '.' || $n eq '..';
      my $p = "$d/$n";
      my @st = lstat $p or next;
      if (-d _) {
        push @todo, $p unless $skip && $skip->($p);
      } elsif (-f _) {
        $each->($p, \@st);
      }
    }
  }
}

# path => "size\tmtime" of the entry's files, and their total size
sub listing {
  my ($dir) = @_;
  my (%files, $total);
  $total = 0;
  return (\%files, 0) unless -d $dir;
  walk($dir, undef, sub {
    my ($p, $st) = @_;
    $p = substr($p, length($dir) + 1);
    return if $p eq $SEAL || $p eq "$SEAL.tmp";
    $files{$p} = "$st->[7]\t$st->[9]";
    $total += $st->[7];
  });
  return (\%files, $total);
}

# sha256 of each of @paths (path => hex; a file that cannot be read gets none)
sub sha256_of_files {
  my %sums;
  my @paths = @_;
  while (my @batch = splice(@paths, 0, 500)) {
    open(my $out, '-|', 'sha256sum', '-z', '--', @batch) or die "sha256sum: $!\n";
    local $/ = "\0";
    while (my $rec = <$out>) {
      chomp $rec;
      $sums{substr($rec, 66)} = substr($rec, 0, 64) if length($rec) > 66;
    }
    close $out; # (a file it could not read: no sum, so "changed")
  }
  return \%sums;
}

# sha256 of $text, which goes to sha256sum through a pipe, never through a file
sub sha256_of_text {
  my ($text) = @_;
  my $pid = open(my $out, '-|') // die "fork: $!\n";
  if (!$pid) {
    open(my $in, '|-', 'sha256sum') or exit 1;
    print $in $text;
    close $in or exit 1;
    exit 0;
  }
  my $line = <$out>;
  close $out or die "sha256sum failed\n";
  return substr($line // '', 0, 64);
}

sub write_file {
  my ($path, $text) = @_;
  open(my $fh, '>', "$path.tmp") or die "$path: $!\n";
  print $fh $text;
  close $fh or die "$path: $!\n";
  rename "$path.tmp", $path or die "$path: $!\n";
}

if ($cmd eq 'begin') {
  my ($entries, $lockfile, $key, $dir, $next) = @args;
  die "usage: cache.pl begin ENTRIES LOCKFILE KEY DIR NEXT\n" unless defined $next;
  chdir $dir or die "cd $dir: $!\n";
  my @paths;
  walk('.', sub { $_[0] =~ m{^\./(_build|deps|\.git)$} }, sub { push @paths, $_[0] });
  my $files = sha256_of_files(@paths);
  $files->{$_} //= '' for @paths;
  # the key (the lock as the build reads it: a link is followed)
  my $lock_sha = $files->{"./$lockfile"};
  if (!$lock_sha) {
    open(my $fh, '<', $lockfile) or die "$lockfile: $!\n";
    local $/;
    $lock_sha = sha256_of_text(scalar(<$fh>) // '');
  }
  my $entry = "$entries/" . substr(sha256_of_text("deps=$lockfile $lock_sha\n$key\n"), 0, 16);
  (my $id = $entry) =~ s{.*/}{};
  print "$id $lock_sha\n";
  # the seal
  my $manifest;
  if (!-d $entry) {
    print "none\n";
  } elsif (open(my $fh, '<', "$entry/$SEAL")) {
    my %sealed;
    while (<$fh>) {
      chomp;
      my ($size, $mtime, $path) = split /\t/, $_, 3;
      $sealed{$path} = "$size\t$mtime" if defined $path;
    }
    close $fh;
    my ($files, $total) = listing($entry);
    my $moved = grep { !exists $sealed{$_} } keys %$files;
    $moved ||= grep { !exists $files->{$_} } keys %sealed;
    my $bad = grep { exists $sealed{$_} && $files->{$_} ne $sealed{$_} } keys %$files;
    if ($moved) {
      print "files were added or removed since it was sealed\n";
    } elsif ($bad) {
      print "$bad file(s) changed since it was sealed\n";
    } else {
      unlink "$entry/$SEAL" or die "$entry/$SEAL: $!\n";
      print "ok $total\n";
      $manifest = "$entry/sources.manifest";
    }
  } else {
    print "it was not completed (the build that wrote it stopped)\n";
  }
  # the sources
  my %old;
  if (defined $manifest && open(my $fh, '<', $manifest)) {
    while (<$fh>) {
      chomp;
      my ($sha, $mtime, $path) = split /\t/, $_, 3;
      $old{$path} = [$sha, $mtime] if defined $path;
    }
    close $fh;
  }
  my $now = time;
  my ($kept, $changed) = (0, 0);
  my @listed = grep { !exists $files->{$_} } sort keys %old;
  my $saved = '';
  for my $p (sort keys %$files) {
    my $o = $old{$p};
    my $mtime = $now;
    if ($o && $files->{$p} ne '' && $o->[0] eq $files->{$p}) {
      $mtime = $o->[1];
      $kept++;
    } else {
      $changed++;
      push @listed, $p;
    }
    utime($mtime, $mtime, $p);
    $saved .= "$files->{$p}\t$mtime\t$p\n" if $files->{$p} ne '';
  }
  write_file($next, $saved);
  my $app_only = 1;
  for (@listed) {
    $app_only = 0 unless m{^\./(lib|priv|test)/} || m{^\./(README|CHANGELOG|LICENSE)[^/]*$} || m{^\./[^/]*\.md$};
  }
  # what a kept Mix reads once: a change there needs a fresh one
  my $fp = "$dir|$entry|$key\n";
  for my $p (sort keys %$files) {
    next if $p =~ m{^\./node_modules/};
    next unless $p =~ m{(^|/)mix\.(exs|lock)$} || $p =~ m{/config/};
    $fp .= "$files->{$p}  $p\n";
  }
  for my $k (sort keys %ENV) {
    next if $k =~ /^(GIGALIXIR_PREVIOUS_SLUG|GIGALIXIR_CLEAN|PWD|OLDPWD|SHLVL|_)$/;
    $fp .= "$k=$ENV{$k}\n";
  }
  my $mixexs = $files->{'./mix.exs'};
  printf "%d %d %s %s %s\n", $kept, $changed, sha256_of_text($fp),
    defined $mixexs && $mixexs ne '' ? $mixexs : '-', $app_only ? 'app_only' : 'other';
} elsif ($cmd eq 'end') {
  my ($entry, $limit, $next, $outcome) = @args;
  die "usage: cache.pl end ENTRY LIMIT NEXT ok|failed\n" unless defined $outcome;
  if ($outcome eq 'ok' && -f $next) {
    rename $next, "$entry/sources.manifest" or die "$entry: $!\n";
  } else {
    unlink $next;
  }
  my ($files, $size) = listing($entry);
  write_file("$entry/$SEAL", join('', map { "$files->{$_}\t$_\n" } sort keys %$files));
  utime(undef, undef, $entry);
  # the entries beside it, most recently used first
  (my $entries = $entry) =~ s{/[^/]+/?$}{};
  opendir(my $dh, $entries) or die "$entries: $!\n";
  my @all = map { "$entries/$_" } grep { !/^\./ && -d "$entries/$_" && !-l "$entries/$_" } readdir $dh;
  closedir $dh;
  my %mtime = map { $_ => (stat $_)[9] } @all;
  my ($total, $kept) = (0, 0);
  for my $e (sort { $mtime{$b} <=> $mtime{$a} || $a cmp $b } @all) {
    my $bytes = $e eq $entry ? $size : (listing($e))[1];
    if ($total + $bytes > $limit) {
      system('rm', '-rf', '--', $e);
      (my $name = $e) =~ s{.*/}{};
      print "evicted $name\n";
    } else {
      $total += $bytes;
      $kept++;
    }
  }
  print "kept $kept\n";
} else {
  die "usage: cache.pl begin|end ...\n";
}
